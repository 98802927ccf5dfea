/**
 * Writes of chunk objects from outside the precompute worker — a blend worker that computed a missing or
 * damaged chunk during a query. They follow the precompute path's rule: under the chunk's lock, and only
 * while a document references the chunk. Garbage collection deletes an object under the same lock after
 * re-checking the references, so a write racing the DELETE of the last document using the chunk either
 * lands before the collection (which then deletes it) or sees no references and writes nothing: deleted
 * data never comes back.
 *
 * Chunks no document references — raw `chunks` of a query, a chat template's prompt prefix — are
 * therefore never written to the shared store: they live only in each blend worker's LRU (LRU_BYTES) and
 * disk tier (DISK_CACHE_BYTES), both bounded in bytes, least recently used first out.
 */
import { errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../ops/log.js';
import {
  closeRedis,
  createRedis,
  redisCall,
  waitForRedis,
  type RedisClient,
  type RedisSettings,
} from '../queue/redis.js';
import type { ObjectStore } from '../storage/types.js';
import { DocumentKeys } from './keys.js';
import { RedisLocks } from './locks.js';
import { documentScripts } from './scripts.js';

/** Where the documents' bookkeeping is: the Redis settings and QUEUE_PREFIX. */
export type ChunkWriteSettings = RedisSettings & { queuePrefix: string };

/**
 * How long a write waits for the chunk's lock. Its holder is a precompute job writing the same object or
 * a collection deleting it; either way this write is not needed, so it gives up soon.
 */
const LOCK_WAIT_MS = 1_000;

export type ChunkWriteOutcome = 'written' | 'unreferenced' | 'locked';

export class ChunkWriteGate {
  private redis: RedisClient | null = null;
  private locks: RedisLocks | null = null;
  private readonly keys: DocumentKeys;

  constructor(
    private readonly settings: ChunkWriteSettings,
    private readonly log: Logger = silentLogger,
  ) {
    this.keys = new DocumentKeys(settings.queuePrefix);
  }

  /** The connection, made on first use (a thread that never computes a chunk never connects). */
  private client(): { redis: RedisClient; locks: RedisLocks } {
    if (!this.redis || !this.locks) {
      this.redis = createRedis(this.settings, 'producer');
      this.locks = new RedisLocks(this.redis, documentScripts(this.redis), this.log);
    }
    return { redis: this.redis, locks: this.locks };
  }

  /** Store `buf` as chunk `key`'s object `objKey`, under its lock, if a document references the chunk. */
  async write(store: ObjectStore, key: string, objKey: string, buf: Buffer): Promise<ChunkWriteOutcome> {
    const { redis, locks } = this.client();
    if (redis.status !== 'ready') await waitForRedis(redis); // the producer role has no offline queue
    const r = await locks.tryWith(this.keys.lock(key), LOCK_WAIT_MS, async () => {
      const refs = await redisCall(() => redis.scard(this.keys.refs(key)));
      if (refs === 0) return 'unreferenced' as const;
      await store.put(objKey, buf);
      return 'written' as const;
    });
    const outcome = r?.value ?? 'locked';
    if (outcome !== 'written') this.log.debug('computed chunk not written to the store', { key, outcome });
    return outcome;
  }

  async close(): Promise<void> {
    if (this.redis) await closeRedis(this.redis).catch((err: unknown) => this.log.warn(errorMessage(err)));
    this.redis = null;
    this.locks = null;
  }
}
