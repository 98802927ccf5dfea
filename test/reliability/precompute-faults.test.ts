/**
 * Precompute under faults, each injected into a real process:
 * - a precompute worker process killed with SIGKILL mid-job: its chunk locks expire within seconds (they
 *   used to hold for 120 s and stall the restarted worker's queue for minutes), its jobs come back to the
 *   queue, and a restarted worker finishes every chunk;
 * - the store read-only for 12 s (s3rver answering writes with 403): attempts back off over minutes
 *   instead of giving up after ~3 s, so every chunk ends ready (465 of 600 used to fail for good).
 */
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelIdentity } from '../../api/server.js';
import { DocumentService, type ModelIdentity } from '../../core/documents/documents.js';
import { PRECOMPUTE_QUEUE } from '../../core/queue/contracts.js';
import {
  closeRedis,
  createRedis,
  keyPrefix,
  waitForRedis,
  type RedisClient,
} from '../../core/queue/redis.js';
import { openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { startPrecomputeWorker } from '../../precompute/precompute-worker.js';
import { STORY_SETS } from '../helpers/models.js';
import { spawnService } from '../helpers/processes.js';
import { serviceConfig, waitFor, type TestServiceEnv } from '../helpers/service.js';
import { startRedis, startS3, type RedisHandle, type S3Handle } from '../helpers/services.js';

/** `n` distinct chunks of story text, each well under 256 tokens. */
function storyChunks(n: number, label: string): string[] {
  const pool = STORY_SETS.flatMap((s) => s.chunks);
  return Array.from(
    { length: n },
    (_, i) => `${label} ${i}. ${pool[i % pool.length]} ${pool[(i * 7 + 3) % pool.length]}`,
  );
}

interface Producer {
  env: TestServiceEnv;
  redis: RedisClient;
  queue: Queue;
  store: ObjectStore;
  docs: DocumentService;
  model: ModelIdentity;
  close(): Promise<void>;
}

async function producer(opts: {
  redis: RedisHandle;
  s3?: S3Handle;
  label: string;
  env: Record<string, string>;
}) {
  const env = await serviceConfig(opts);
  const { config } = env;
  const redis = createRedis(config, 'producer');
  await waitForRedis(redis);
  const queue = new Queue(PRECOMPUTE_QUEUE, { connection: redis, prefix: keyPrefix(config.queuePrefix) });
  const store = openObjectStore(config.kvStoreUrl, { s3: config.s3 });
  const docs = new DocumentService(
    redis,
    store,
    queue,
    config.queuePrefix,
    undefined,
    config.precomputeAttempts,
  );
  const model = await loadModelIdentity(config);
  return {
    env,
    redis,
    queue,
    store,
    docs,
    model,
    async close() {
      await queue.close();
      await closeRedis(redis);
      await store.close();
      await env.cleanup();
    },
  } satisfies Producer;
}

async function states(p: Producer, keys: string[]) {
  const info = await p.docs.chunkInfo(keys);
  const count = (s: string) => [...info.values()].filter((i) => i.state === s).length;
  return { ready: count('ready'), failed: count('failed'), pending: count('pending') };
}

let redisServer: RedisHandle;
let s3: S3Handle;

beforeAll(async () => {
  [redisServer, s3] = await Promise.all([startRedis(), startS3()]);
});

afterAll(async () => {
  await Promise.all([redisServer?.stop(), s3?.stop()]);
});

describe('a precompute worker killed with SIGKILL mid-job', () => {
  it('leaves no lock for long, and a restarted worker finishes every chunk within seconds', async () => {
    const p = await producer({
      redis: redisServer,
      label: 'kill',
      env: {
        JOB_LOCK_MS: '2000',
        RECONCILE_INTERVAL_MS: '2000',
        CHUNK_TOKEN_BUDGET: '256',
        LOG_LEVEL: 'info',
      },
    });
    const workers: ReturnType<typeof spawnService>[] = [];
    try {
      const chunks = storyChunks(160, 'Kill');
      const { keys } = await p.docs.ingest({ id: 'bulk', chunks }, p.model, { budget: 256 });
      const vars = { ...p.env.vars, KV_STORE_URL: p.env.config.kvStoreUrl };
      workers.push(spawnService('precompute/main.ts', vars));
      await workers[0].waitForLog(/precompute worker started/);
      await waitFor(async () => (await states(p, keys)).ready >= 10, 30_000, 'first chunks ready');
      await workers[0].kill('SIGKILL');

      // Killed mid-job: jobs it held are still marked active; the chunk locks it held expire on their own.
      const left = await states(p, keys);
      expect(left.ready).toBeLessThan(keys.length);
      expect(await p.queue.getActiveCount()).toBeGreaterThan(0);
      for (const lock of await p.redis.keys(`${p.docs.keys.prefix}lock:*`)) {
        expect(await p.redis.pttl(lock)).toBeLessThanOrEqual(10_000);
      }

      const t0 = Date.now();
      workers.push(spawnService('precompute/main.ts', vars));
      await waitFor(async () => (await states(p, keys)).ready === keys.length, 45_000, 'every chunk ready');
      const recoveredMs = Date.now() - t0;
      expect((await states(p, keys)).failed).toBe(0);
      // Stall detection (JOB_LOCK_MS 2 s) plus the lock TTL (10 s) bound the wait: not 120 s, not minutes.
      expect(recoveredMs).toBeLessThan(30_000);
      console.log(`precompute recovered ${left.pending} chunks ${recoveredMs} ms after kill -9`);
    } finally {
      for (const w of workers) await w.kill('SIGTERM');
      await p.close();
    }
  });
});

describe('a store that is read-only for 12 s', () => {
  it('retries with backoff over minutes, so every chunk ends stored', async () => {
    const p = await producer({
      redis: redisServer,
      s3,
      label: 'readonly',
      env: { CHUNK_TOKEN_BUDGET: '256', RECONCILE_INTERVAL_MS: '0' },
    });
    const worker = await startPrecomputeWorker({ config: p.env.config, threadInit: { threads: 1 } });
    try {
      const doc = await p.docs.ingest({ id: 'ro', chunks: storyChunks(60, 'ReadOnly') }, p.model, {
        budget: 256,
      });
      await waitFor(async () => (await states(p, doc.keys)).ready >= 3, 20_000, 'first chunks');
      s3.setReadOnly(true);
      await new Promise((r) => setTimeout(r, 12_000));
      const during = await states(p, doc.keys);
      const delays = (await p.queue.getDelayed()).map((j) => j.delay);
      s3.setReadOnly(false);
      expect(during.ready).toBeLessThan(doc.keys.length); // the outage did bite
      // Attempts back off (1 s doubling): jobs that failed three times wait seconds for their next attempt,
      // and none has used up its attempts.
      expect(Math.max(0, ...delays)).toBeGreaterThanOrEqual(3_000);
      expect(during.failed).toBe(0);
      const t0 = Date.now();
      await waitFor(async () => (await states(p, doc.keys)).ready === doc.keys.length, 60_000, 'every chunk');
      expect((await states(p, doc.keys)).failed).toBe(0);
      console.log(
        `read-only store: ${doc.keys.length - during.ready} chunks waited out the outage, all stored ${Date.now() - t0} ms after it ended`,
      );
    } finally {
      s3.setReadOnly(false);
      await worker.close();
      await p.close();
    }
  });
});
