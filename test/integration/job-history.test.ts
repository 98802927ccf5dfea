/**
 * The queues keep a bounded history of finished jobs, which the /jobs board shows (Bull Board's JSON API,
 * as its page reads it): completed precompute and blend jobs up to JOBS_KEEP_COMPLETED, failed ones (with
 * their reason) up to JOBS_KEEP_FAILED. A chunk taken up again whose finished job is still kept gets its
 * job run again, not swallowed by the kept one. Real Redis, a real precompute and blend worker.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../core/config/index.js';
import { loadModelIdentity } from '../../api/server.js';
import { precomputeJobId } from '../../core/queue/contracts.js';
import { closeRedis, createRedis } from '../../core/queue/redis.js';
import { STORY_SETS } from '../helpers/models.js';
import { waitFor } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

const KEEP_COMPLETED = 2;
let redis: RedisHandle;
let stack: Stack;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({
    redis,
    label: 'job-history',
    env: { JOBS_KEEP_COMPLETED: String(KEEP_COMPLETED), RECONCILE_INTERVAL_MS: '0' },
  });
});

afterAll(async () => {
  await stack?.close();
  await redis?.stop();
});

interface BoardJob {
  id: string;
  data: { key?: string; question?: string };
  returnValue: unknown;
  failedReason?: string;
}

/** One queue's jobs of one status, as the /jobs page fetches them. */
async function board(queue: string, status: 'completed' | 'failed') {
  const r = await fetch(
    `${stack.api.url}/jobs/api/queues?activeQueue=${queue}&status=${status}&page=1&jobsPerPage=50`,
  );
  expect(r.status).toBe(200);
  const body = (await r.json()) as {
    queues: { name: string; counts: Record<string, number>; jobs: BoardJob[] }[];
  };
  return body.queues.find((q) => q.name === queue)!;
}

describe('the job history the /jobs board shows', () => {
  it('keeps completed jobs up to the count, with their data and result', async () => {
    const text = STORY_SETS[0].chunks.join('\n\n');
    const post = await stack.request('POST', '/v1/documents', { body: { id: 'kept', text } });
    expect(post.status).toBe(202);
    expect(post.body.chunks).toBeGreaterThan(KEEP_COMPLETED);
    await stack.ready('kept');
    const q = await waitFor(async () => {
      const b = await board('precompute', 'completed');
      return b.counts.completed === KEEP_COMPLETED && b;
    }, 10_000);
    expect(q.jobs).toHaveLength(KEEP_COMPLETED); // three ran; the oldest is gone
    const keys = ((await stack.request('GET', '/v1/documents/kept')).body.chunks as { key: string }[]).map(
      (c) => c.key,
    );
    for (const job of q.jobs) {
      expect(keys).toContain(job.data.key);
      expect(job.returnValue).toMatchObject({ key: job.data.key, computed: true });
    }
    const query = await stack.request('POST', '/v1/query', {
      body: { question: 'Lily', documents: ['kept'], maxTokens: 2 },
    });
    expect(query.status).toBe(200);
    const blend = await board('blend', 'completed');
    expect(blend.jobs.map((j) => j.id)).toContain(query.body.jobId);
  });

  it('keeps failed jobs with their reason', async () => {
    const model = await loadModelIdentity(stack.config);
    const other = { ...model, fingerprint: 'f'.repeat(64) };
    const r = await stack.api.docs.ingest({ id: 'other-model', text: STORY_SETS[1].chunks[0] }, other, {
      budget: stack.config.chunkTokenBudget,
    });
    const q = await waitFor(async () => {
      const b = await board('precompute', 'failed');
      return b.jobs.some((j) => j.data.key === r.keys[0]) && b;
    }, 20_000);
    const job = q.jobs.find((j) => j.data.key === r.keys[0])!;
    expect(job.failedReason).toMatch(/KV_MISMATCH/);
  });

  it('runs the job of a chunk taken up again even while its finished job is kept', async () => {
    const status = await stack.request('GET', '/v1/documents/kept');
    const docs = stack.api.docs;
    const client = createRedis(stack.config, 'producer');
    onTestFinished(() => closeRedis(client));
    const kept = (await board('precompute', 'completed')).jobs.map((j) => j.data.key);
    const key = (status.body.chunks as { key: string }[]).map((c) => c.key).find((k) => kept.includes(k))!;
    const [gen, tokens, fp] = await client.hmget(docs.keys.chunk(key), 'gen', 'tokens', 'fp');
    const id = precomputeJobId(key, Number(gen));
    expect((await board('precompute', 'completed')).jobs.map((j) => j.id)).toContain(id);
    // The chunk pending again at the same generation (its ready mark lost), its job enqueued again.
    await client.hset(docs.keys.chunk(key), 'state', 'pending');
    await docs.jobs.enqueue([
      { gen: Number(gen), data: { key, fingerprint: fp!, tokenIds: JSON.parse(tokens!) as number[] } },
    ]);
    await waitFor(
      async () => (await client.hget(docs.keys.chunk(key), 'state')) === 'ready',
      10_000,
      'the chunk to be ready again',
    );
  });
});

describe('JOBS_KEEP_* defaults', () => {
  it('keep failures longer than successes, both bounded', () => {
    const { jobHistory } = loadConfig({});
    expect(jobHistory.failed.age).toBeGreaterThan(jobHistory.completed.age);
    expect(jobHistory.completed.count).toBeGreaterThan(0);
    expect(jobHistory.completed.age).toBeGreaterThan(0);
    const set = loadConfig({ JOBS_KEEP_FAILED: '7', JOBS_KEEP_FAILED_S: '60' }).jobHistory.failed;
    expect(set).toEqual({ count: 7, age: 60 });
  });
});
