/**
 * Garbage collection of chunk objects: a chunk no document references any more loses its stored object,
 * under the chunk's lock (a precompute writing it holds the same lock), and every blend worker is told to
 * drop its copies (the `evict` channel).
 */
import { errorMessage } from '../errors.js';
import { chunkObjectKey } from '../kv/format.js';
import { redisCall } from '../queue/redis.js';
import type { IndexHandle } from './index-handle.js';

export class ChunkCollector {
  constructor(private readonly h: IndexHandle) {}

  /**
   * Delete the objects of unreferenced chunks, each under its lock. Chunks whose lock cannot be taken in
   * `lockWaitMs`, or whose deletion fails, stay in the gc set for `sweep` to retry. Returns how many
   * objects were deleted.
   */
  async collect(keys: readonly string[], lockWaitMs = 5_000): Promise<number> {
    const gone: string[] = [];
    for (const key of keys) {
      try {
        if (await this.collectOne(key, lockWaitMs)) gone.push(key);
      } catch (err) {
        this.h.log.warn('chunk garbage collection deferred', { key, error: errorMessage(err) });
      }
    }
    if (gone.length > 0) {
      await this.h.redis
        .publish(this.h.keys.evict, JSON.stringify(gone))
        .catch((err: unknown) =>
          this.h.log.warn('could not announce deleted chunks to blend workers', { error: errorMessage(err) }),
        );
    }
    return gone.length;
  }

  /** Retry garbage collection of every chunk left in the gc set. */
  async sweep(lockWaitMs = 1_000): Promise<number> {
    const keys = await redisCall(() => this.h.redis.smembers(this.h.keys.gc));
    return keys.length ? this.collect(keys, lockWaitMs) : 0;
  }

  /** True when the chunk's object was deleted; false when it is referenced again or locked. */
  private async collectOne(key: string, lockWaitMs: number): Promise<boolean> {
    const { keys, script, store, locks } = this.h;
    const gcKeys = [keys.refs(key), keys.chunk(key), keys.gc];
    const done = await locks.tryWith(keys.lock(key), lockWaitMs, async () => {
      const fp = (await redisCall(() => script('gc-begin', gcKeys, [key]))) as string | null;
      if (fp === null) return false; // referenced again: keep it
      if (/^[0-9a-f]{64}$/.test(fp)) await store.delete(chunkObjectKey(fp, key));
      await redisCall(() => script('gc-end', [...gcKeys, keys.pending, keys.failed], [key]));
      return true;
    });
    if (!done) this.h.log.info('chunk garbage collection deferred: chunk is locked', { key });
    return done?.value ?? false;
  }
}
