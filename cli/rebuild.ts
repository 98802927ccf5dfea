/**
 * `cacheblend rebuild [--json]`: restore the document index in Redis from the manifests in the object store
 * (core/documents/rebuild.ts). Run it after Redis lost its data; precompute workers then mark stored
 * chunks ready without recomputing them. Safe to run any time: documents already indexed are untouched.
 */
import { Queue } from 'bullmq';
import { loadConfig, type Config } from '../core/config/index.js';
import { DocumentService } from '../core/documents/documents.js';
import { rebuildIndex, type RebuildSummary } from '../core/documents/rebuild.js';
import { createLogger } from '../core/ops/log.js';
import { ensureRedis } from '../core/ops/redis-launcher.js';
import { PRECOMPUTE_QUEUE } from '../core/queue/contracts.js';
import { checkRedisDurability } from '../core/queue/durability.js';
import { closeRedis, createRedis, keyPrefix, waitForRedis } from '../core/queue/redis.js';
import { openObjectStore } from '../core/storage/index.js';
import { withTimeout } from '../core/util/time.js';

export async function rebuildCommand(
  opts: { json?: boolean },
  out: (s: string) => void,
  config: Config = loadConfig(),
): Promise<RebuildSummary> {
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'rebuild');
  const launched = await ensureRedis(config, log);
  const redis = createRedis(config, 'producer');
  const store = openObjectStore(config.kvStoreUrl, { s3: config.s3 });
  const queue = new Queue(PRECOMPUTE_QUEUE, { connection: redis, prefix: keyPrefix(config.queuePrefix) });
  queue.on('error', () => undefined);
  try {
    await waitForRedis(redis, 10_000);
    await checkRedisDurability(redis, config.redisRequireDurable, log);
    const docs = new DocumentService(
      redis,
      store,
      queue,
      config.queuePrefix,
      log,
      config.precomputeAttempts,
      config.jobHistory,
    );
    const summary = await rebuildIndex(docs, store);
    out(opts.json ? `${JSON.stringify(summary)}\n` : formatSummary(summary));
    return summary;
  } finally {
    await withTimeout(queue.close(), 2_000, 'closing the queue').catch(() => undefined);
    await closeRedis(redis);
    await store.close();
    await launched.stop();
  }
}

function formatSummary(s: RebuildSummary): string {
  return [
    `manifests: ${s.manifests}`,
    `restored:  ${s.restored}`,
    `unchanged: ${s.unchanged}`,
    `damaged:   ${s.damaged}${s.problems.map((p) => `\n  ${p}`).join('')}`,
    `precompute jobs enqueued: ${s.enqueued} (stored caches are checked, not recomputed)`,
    '',
  ].join('\n');
}
