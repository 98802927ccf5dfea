/**
 * Precompute jobs that fail for real, through a real precompute worker on real Redis and s3rver: a
 * permanent failure (a job for another model: KV_MISMATCH) fails after one attempt, a retryable one (the
 * store refusing writes: STORAGE) after the last of PRECOMPUTE_ATTEMPTS; either way the document says
 * failed, with the reason. And chunk locks: renewal keeps one past its TTL while its holder lives, and
 * one whose holder stopped renewing frees itself within the TTL.
 */
import { Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelIdentity } from '../../api/server.js';
import { RedisLocks } from '../../core/documents/locks.js';
import { documentScripts } from '../../core/documents/scripts.js';
import { PRECOMPUTE_QUEUE } from '../../core/queue/contracts.js';
import {
  closeRedis,
  createRedis,
  keyPrefix,
  waitForRedis,
  type RedisClient,
} from '../../core/queue/redis.js';
import { STORY_SETS } from '../helpers/models.js';
import { waitFor } from '../helpers/service.js';
import { startRedis, startS3, type RedisHandle, type S3Handle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

const ATTEMPTS = 2;
let redis: RedisHandle;
let s3: S3Handle;
let stack: Stack;
/** Failed attempts per job id, as the worker reports them. */
const failures = new Map<string, number>();

let precomputeQueue: Queue;
let queueClient: RedisClient;

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3()]);
  stack = await startStack({
    redis,
    s3,
    label: 'precompute-failures',
    env: { PRECOMPUTE_ATTEMPTS: String(ATTEMPTS), RECONCILE_INTERVAL_MS: '0' },
  });
  queueClient = createRedis(stack.config, 'producer');
  precomputeQueue = new Queue(PRECOMPUTE_QUEUE, {
    connection: queueClient,
    prefix: keyPrefix(stack.config.queuePrefix),
  });
  stack.precompute!.worker.on('failed', (job) => {
    if (job?.id) failures.set(job.id, (failures.get(job.id) ?? 0) + 1);
  });
});

afterAll(async () => {
  await precomputeQueue?.close();
  if (queueClient) await closeRedis(queueClient);
  s3?.setReadOnly(false);
  await stack?.close();
  await Promise.all([redis?.stop(), s3?.stop()]);
});

/** Wait until a document has failed; its chunk errors. */
async function failedChunks(id: string): Promise<string[]> {
  const r = await waitFor(
    async () => {
      const s = await stack.request('GET', `/v1/documents/${id}`);
      return s.body.status === 'failed' && s;
    },
    20_000,
    `document ${id} to fail`,
  );
  return (r.body.chunks as { status: string; error?: string }[]).map((c) => c.error ?? c.status);
}

const jobsOf = (keys: string[]) =>
  [...failures.entries()].filter(([id]) => keys.some((k) => id.startsWith(k)));

describe('precompute jobs that fail', () => {
  it('fail after one attempt when the failure is permanent (a job for another model)', async () => {
    const model = await loadModelIdentity(stack.config);
    const other = { ...model, fingerprint: 'f'.repeat(64) };
    const r = await stack.api.docs.ingest({ id: 'other-model', text: STORY_SETS[0].chunks[0] }, other, {
      budget: stack.config.chunkTokenBudget,
    });
    const errors = await failedChunks('other-model');
    for (const e of errors) expect(e).toMatch(/^KV_MISMATCH: chunk is for model ffffffffffff/);
    const jobs = jobsOf(r.keys);
    expect(jobs.length).toBe(new Set(r.keys).size);
    for (const [, n] of jobs) expect(n).toBe(1);
    // Counting attempts alone cannot tell a permanent failure from a retryable one whose retry has not come
    // yet: the job must have failed for good (kept in the queue's failed history), no retry pending.
    for (const [id] of jobs)
      expect(await (await Job.fromId(precomputeQueue, id))?.getState(), id).toBe('failed');
    const pending = await precomputeQueue.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
    expect(Object.values(pending).reduce((a, n) => a + n, 0)).toBe(0);
  });

  it(`fail after the last of ${ATTEMPTS} attempts when the failure is retryable (a read-only store)`, async () => {
    const worker = stack.precompute!.worker;
    await worker.pause(); // the chunk's job must meet the read-only store, not finish first
    const post = await stack.request('POST', '/v1/documents', {
      body: { id: 'read-only', chunks: [STORY_SETS[1].chunks[0]] },
    });
    expect(post.status).toBe(202); // the manifest went in; the chunk's object will not
    s3.setReadOnly(true);
    worker.resume();
    try {
      const errors = await failedChunks('read-only');
      for (const e of errors) expect(e).toMatch(/^STORAGE: .*AccessDenied/);
    } finally {
      s3.setReadOnly(false);
    }
    const status = await stack.request('GET', '/v1/documents/read-only');
    const keys = (status.body.chunks as { key: string }[]).map((c) => c.key);
    const jobs = jobsOf(keys);
    expect(jobs.length).toBe(keys.length);
    for (const [, n] of jobs) expect(n).toBe(ATTEMPTS);
  });
});

describe('chunk locks', () => {
  it('are kept past their TTL while renewed, and free themselves once renewal stops', async () => {
    const client = createRedis({ redisUrl: redis.url, redisClusterNodes: [] }, 'producer');
    await waitForRedis(client);
    try {
      const ttl = 300;
      const locks = new RedisLocks(client, documentScripts(client), undefined, ttl);
      const release = await locks.acquire('test:lock:a', 0);
      expect(release).not.toBeNull();
      await new Promise((r) => setTimeout(r, ttl * 4)); // four TTLs: only renewal keeps it
      expect(await client.pttl('test:lock:a')).toBeGreaterThan(0);
      expect(await locks.acquire('test:lock:a', 0)).toBeNull(); // still held
      await release!();
      expect(await client.exists('test:lock:a')).toBe(0);

      // A holder that died: the key set as acquire sets it, never renewed.
      await client.set('test:lock:b', 'dead-holder', 'PX', ttl, 'NX');
      const t0 = Date.now();
      const next = await locks.acquire('test:lock:b', 5_000);
      expect(next).not.toBeNull();
      expect(Date.now() - t0).toBeLessThan(ttl + 200);
      await next!();
    } finally {
      await closeRedis(client);
    }
  });
});
