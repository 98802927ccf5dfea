/**
 * Keeps a blend worker's own tiers (LRU and disk) free of deleted chunks: it follows the `evict` channel
 * that garbage collection publishes to (core/documents/documents.ts `collect`), and scrubs the disk tier
 * against Redis when it starts and every SCRUB_MS — so copies deleted while the worker was away, or
 * brought back by a query that raced the delete, go too.
 */
import { DocumentKeys } from '../core/documents/keys.js';
import { errorMessage } from '../core/errors.js';
import type { EngineCaller } from '../core/inference/engine-thread.js';
import type { Logger } from '../core/ops/log.js';
import {
  closeRedis,
  createRedis,
  redisCall,
  type RedisClient,
  type RedisSettings,
} from '../core/queue/redis.js';

const SCRUB_MS = 10 * 60_000;
const SCRUB_BATCH = 500;

export interface EvictionFollower {
  /** Drop disk copies of chunks Redis no longer knows; returns how many went. */
  scrub(): Promise<number>;
  close(): Promise<void>;
}

export async function followEvictions(opts: {
  settings: RedisSettings;
  queuePrefix: string;
  /** A connection for the scrub's lookups (not closed here). */
  redis: RedisClient;
  thread: EngineCaller;
  log: Logger;
}): Promise<EvictionFollower> {
  const { thread, log, redis } = opts;
  const keys = new DocumentKeys(opts.queuePrefix);
  const subscriber = createRedis(opts.settings, 'worker');
  subscriber.on('message', (channel: string, message: string) => {
    if (channel !== keys.evict) return;
    let chunks: string[];
    try {
      chunks = (JSON.parse(message) as unknown[]).filter((k): k is string => typeof k === 'string');
    } catch {
      return;
    }
    thread
      .call('evictChunks', [chunks])
      .catch((err: unknown) =>
        log.warn('could not drop deleted chunks from the caches', { error: errorMessage(err) }),
      );
  });
  await subscriber.subscribe(keys.evict).catch((err: unknown) =>
    log.warn('cannot follow chunk deletions yet (Redis); will when it reconnects', {
      error: errorMessage(err),
    }),
  );
  const scrub = async () => {
    const onDisk = await thread.call('diskChunkKeys', []);
    let dropped = 0;
    for (let i = 0; i < onDisk.length; i += SCRUB_BATCH) {
      const batch = onDisk.slice(i, i + SCRUB_BATCH);
      const p = redis.pipeline();
      for (const k of batch) p.exists(keys.chunk(k));
      const replies = (await redisCall(() => p.exec())) ?? [];
      const gone = batch.filter((_, j) => replies[j]?.[0] === null && replies[j]?.[1] === 0);
      if (gone.length > 0) dropped += await thread.call('evictChunks', [gone]);
    }
    if (dropped > 0) log.info('dropped disk copies of deleted chunks', { dropped });
    return dropped;
  };
  const runScrub = () =>
    scrub().catch((err: unknown) => log.warn('disk cache scrub failed', { error: errorMessage(err) }));
  void runScrub();
  const timer = setInterval(runScrub, SCRUB_MS);
  timer.unref();
  return {
    scrub,
    async close() {
      clearInterval(timer);
      await closeRedis(subscriber);
    },
  };
}
