/**
 * Queries under hostile sizes and overload, over HTTP against the real service:
 * - an 85 KB question is refused (413) at once by its length, and other queries are answered meanwhile
 *   (it used to hold the blend worker ~110 s in a quadratic tokenizer while everything else got 504);
 * - a 1.5 KB query naming a 10,000-chunk document 100 times is served from a small job (it used to build
 *   1,000,000 references: 1.6 GB RSS and a 147 MB job payload), and documents holding more chunks than
 *   MAX_QUERY_CHUNKS are refused with 413 before their lists are read;
 * - beyond QUERY_QUEUE_LIMIT waiting queries, 429 with Retry-After and nothing enqueued; readiness says
 *   the queue is full;
 * - a client that goes away cancels its query: removed while it waits, stopped while it runs.
 */
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLEND_QUEUE, type BlendJobData } from '../../core/queue/contracts.js';
import { closeRedis, createRedis, keyPrefix, type RedisClient } from '../../core/queue/redis.js';
import { STORY_SETS } from '../helpers/models.js';
import { waitFor } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

let redis: RedisHandle;
let stack: Stack;
let client: RedisClient;
let blendQueue: Queue<BlendJobData>;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({
    redis,
    label: 'overload',
    env: {
      QUERY_QUEUE_LIMIT: '3',
      CHUNK_TOKEN_BUDGET: '128',
      MAX_QUERY_CHUNKS: '15000',
      RECONCILE_INTERVAL_MS: '0',
    },
  });
  client = createRedis(stack.config, 'producer');
  blendQueue = new Queue(BLEND_QUEUE, { connection: client, prefix: keyPrefix(stack.config.queuePrefix) });
  const text = STORY_SETS[0].chunks.join('\n\n');
  expect((await stack.request('POST', '/v1/documents', { body: { id: 'lily', text } })).status).toBe(202);
  await stack.ready('lily');
});

afterAll(async () => {
  await blendQueue?.close();
  if (client) await closeRedis(client);
  await stack?.close();
  await redis?.stop();
});

const story = STORY_SETS.flatMap((s) => s.chunks).join(' ');
const query = (body: Record<string, unknown>, opts: { timeoutMs?: number } = {}) =>
  stack.request('POST', '/v1/query', { body: { documents: ['lily'], maxTokens: 4, ...body }, ...opts });

describe('cost checks for queries', () => {
  it('refuses an 85 KB question at once, and answers other queries meanwhile', async () => {
    const huge = story.repeat(Math.ceil(85_000 / story.length)).slice(0, 85_000);
    const t0 = Date.now();
    const [big, normal, chat] = await Promise.all([
      query({ question: huge }),
      query({ question: 'Lily threw the ball and' }),
      stack.request('POST', '/v1/chat/completions', {
        body: { model: 'stories260K', messages: [{ role: 'user', content: huge }], documents: ['lily'] },
      }),
    ]);
    expect(big.status).toBe(413);
    expect(big.body.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', field: 'question' });
    expect(chat.status).toBe(413);
    expect(normal.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('serves a query naming a 10,000-chunk document 100 times from a small job', async () => {
    await stack.precompute!.worker.pause(); // only the index matters here: no need to compute 10,000 chunks
    const chunks = Array.from({ length: 10_000 }, (_, i) => `Fact ${i}: the ball is red.`);
    expect((await stack.request('POST', '/v1/documents', { body: { id: 'huge', chunks } })).status).toBe(202);
    const rss0 = process.memoryUsage().rss;
    const body = { question: 'Which ball is red?', documents: Array(100).fill('huge'), maxTokens: 4 };
    expect(JSON.stringify(body).length).toBeLessThan(1_600);
    const r = await stack.request('POST', '/v1/query?async=1', { body });
    expect(r.status).toBe(202);
    const job = await blendQueue.getJob(r.body.jobId as string);
    const payload = JSON.stringify(job!.data).length;
    expect(payload).toBeLessThan(64 * 1024); // bounded by the context (512 tokens), not by the request
    expect(job!.data.prompt.chunks.length).toBeLessThanOrEqual(512);
    const done = await waitFor(async () => (await job!.isCompleted()) && job, 30_000, 'the query answered');
    expect(done).toBeTruthy();
    expect(process.memoryUsage().rss - rss0).toBeLessThan(300 * 1024 * 1024);

    const chunks2 = chunks.map((c) => `Another ${c}`);
    expect(
      (await stack.request('POST', '/v1/documents', { body: { id: 'huge2', chunks: chunks2 } })).status,
    ).toBe(202);
    const t0 = Date.now();
    const over = await query({ question: 'Which ball?', documents: ['huge', 'huge2'] });
    expect(over.status).toBe(413);
    expect(over.body.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', field: 'documents' });
    expect(over.body.error?.message).toMatch(/20000 chunks.*MAX_QUERY_CHUNKS 15000/);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });
});

describe('admission control', () => {
  it('answers 429 with Retry-After beyond QUERY_QUEUE_LIMIT, enqueueing nothing', async () => {
    await stack.blend!.worker.pause(); // queries wait: the queue fills deterministically
    try {
      const accepted = await Promise.all(
        [0, 1, 2].map((i) =>
          stack.request('POST', '/v1/query?async=1', {
            body: { question: `Lily ${i}`, documents: ['lily'] },
          }),
        ),
      );
      for (const r of accepted) expect(r.status).toBe(202);
      expect(await blendQueue.getWaitingCount()).toBe(3);
      const refused = [
        await query({ question: 'Lily' }),
        await stack.request('POST', '/v1/query?async=1', { body: { question: 'Lily', documents: ['lily'] } }),
        await stack.request('POST', '/v1/completions', {
          body: { model: 'stories260K', prompt: 'Lily', documents: ['lily'], max_tokens: 4 },
        }),
      ];
      for (const r of refused) {
        expect(r.status).toBe(429);
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      }
      expect(refused[0].body.error).toMatchObject({ code: 'OVERLOADED' });
      expect(await blendQueue.getWaitingCount()).toBe(3); // nothing enqueued for the refused ones
      const ready = await stack.request('GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.error?.checks?.queue).toMatch(/^full: 3 queries waiting/);
    } finally {
      stack.blend!.worker.resume();
    }
    await waitFor(async () => (await blendQueue.getWaitingCount()) === 0, 30_000, 'the queue drained');
  });
});

describe('cancellation', () => {
  it('removes a waiting query whose client went away', async () => {
    await stack.blend!.worker.pause();
    try {
      const gaveUp = query({ question: 'Lily' }, { timeoutMs: 1_500 }).catch((err: Error) => err);
      await waitFor(async () => (await blendQueue.getWaitingCount()) === 1, 5_000, 'the query queued');
      expect(await gaveUp).toBeInstanceOf(Error); // the client's own timeout
      await waitFor(async () => (await blendQueue.getWaitingCount()) === 0, 5_000, 'the query removed');
    } finally {
      stack.blend!.worker.resume();
    }
  });

  it('stops a running query whose client went away', async () => {
    const ac = new AbortController();
    const res = await fetch(`${stack.api.url}/v1/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        question: 'Once upon a time',
        documents: ['lily'],
        maxTokens: 400,
        stream: true,
      }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    let seen = '';
    let jobId = '';
    while (!/event: token/.test(seen)) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
      jobId ||= /"jobId":"([^"]+)"/.exec(seen)?.[1] ?? '';
    }
    expect(jobId).not.toBe('');
    ac.abort(); // mid-answer: the worker is decoding
    const job = await blendQueue.getJob(jobId);
    await waitFor(async () => (await job!.getState()) === 'failed', 10_000, 'the job stopped');
    const failed = await blendQueue.getJob(jobId);
    expect(failed!.failedReason).toMatch(/^CANCELLED: /);
  });
});
