/**
 * The reconciler (core/documents/reconciler.ts) on real Redis, a real precompute worker and a file store:
 * a chunk indexed as pending whose job was never enqueued (an API that died between the two) gets its
 * job; a chunk that failed for a transient reason is retried, one the input made fail is left failed;
 * and two reconcilers never run a round at once.
 */
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelIdentity } from '../../api/server.js';
import { DocumentService, type ModelIdentity } from '../../core/documents/documents.js';
import { Reconciler } from '../../core/documents/reconciler.js';
import { PRECOMPUTE_QUEUE } from '../../core/queue/contracts.js';
import {
  closeRedis,
  createRedis,
  keyPrefix,
  waitForRedis,
  type RedisClient,
} from '../../core/queue/redis.js';
import { openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { startPrecomputeWorker, type PrecomputeWorker } from '../../precompute/precompute-worker.js';
import { STORY_SETS } from '../helpers/models.js';
import { serviceConfig, waitFor, type TestServiceEnv } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';

let redisServer: RedisHandle;
let env: TestServiceEnv;
let redis: RedisClient;
let queue: Queue;
let store: ObjectStore;
let docs: DocumentService;
let model: ModelIdentity;
let worker: PrecomputeWorker;

beforeAll(async () => {
  redisServer = await startRedis();
  env = await serviceConfig({ redis: redisServer, label: 'reconciler', env: { CHUNK_TOKEN_BUDGET: '128' } });
  const { config } = env;
  redis = createRedis(config, 'producer');
  await waitForRedis(redis);
  queue = new Queue(PRECOMPUTE_QUEUE, { connection: redis, prefix: keyPrefix(config.queuePrefix) });
  store = openObjectStore(config.kvStoreUrl);
  docs = new DocumentService(redis, store, queue, config.queuePrefix);
  model = await loadModelIdentity(config);
  worker = await startPrecomputeWorker({ config, threadInit: { threads: 1 }, reconcileMs: 0 });
});

afterAll(async () => {
  await worker?.close();
  await queue?.close();
  if (redis) await closeRedis(redis);
  await store?.close();
  await Promise.all([redisServer?.stop(), env?.cleanup()]);
});

const stateOf = async (key: string) => (await docs.chunkInfo([key])).get(key)?.state;

describe('Reconciler', () => {
  it('enqueues a pending chunk whose job was lost', async () => {
    // No queue: the index is written, then enqueueing fails — as if the API died in between.
    const noQueue = new DocumentService(redis, store, null, env.config.queuePrefix);
    await expect(
      noQueue.ingest({ id: 'lost', chunks: [STORY_SETS[0].chunks[0]] }, model, { budget: 128 }),
    ).rejects.toThrow(/no precompute queue/);
    const [key] = JSON.parse((await redis.hget(docs.keys.doc('lost'), 'chunks'))!) as string[];
    await new Promise((r) => setTimeout(r, 300));
    expect(await stateOf(key)).toBe('pending'); // nobody will ever compute it…
    const round = await new Reconciler(docs, { staleMs: 0 }).round();
    expect(round).toMatchObject({ ran: true, requeued: 1 });
    await waitFor(async () => (await stateOf(key)) === 'ready', 20_000, 'lost chunk ready'); // …until now
  });

  it('retries a chunk that failed for a transient reason, and leaves one the input made fail', async () => {
    const r = await docs.ingest({ id: 'flaky', chunks: STORY_SETS[1].chunks.slice(0, 2) }, model, {
      budget: 128,
    });
    await waitFor(async () => (await stateOf(r.keys[1])) === 'ready', 20_000, 'ready');
    // Turn both back into failed chunks: one by a store outage, one by its input.
    for (const [i, error] of ['STORAGE: the store is read-only', 'INVALID_ARGUMENT: bad chunk'].entries()) {
      await redis.hset(docs.keys.chunk(r.keys[i]), 'state', 'pending');
      await docs.lifecycle.markFailed(r.keys[i], error);
      expect(await stateOf(r.keys[i])).toBe('failed');
    }
    expect((await docs.status('flaky'))?.status).toBe('failed');
    const round = await new Reconciler(docs, { failedRetryMs: 0 }).round();
    expect(round).toMatchObject({ ran: true, retried: 1 });
    await waitFor(async () => (await stateOf(r.keys[0])) === 'ready', 20_000, 'retried chunk ready');
    expect(await stateOf(r.keys[1])).toBe('failed');
    expect(await redis.zscore(docs.keys.failed, r.keys[1])).toBeNull(); // not looked at again
  });

  it('runs one round at a time across reconcilers', async () => {
    const release = await docs.locks.acquire(docs.keys.reconcile, 0);
    try {
      expect((await new Reconciler(docs).round()).ran).toBe(false);
    } finally {
      await release!();
    }
    expect((await new Reconciler(docs).round()).ran).toBe(true);
  });
});
