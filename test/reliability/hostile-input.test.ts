/**
 * Hostile input over HTTP against the real service (API + workers, real Redis and file store):
 * - a 40 KB chunk (thousands of tokens, many times the context) is refused with 413 before anything is
 *   stored or queued (it used to be precomputed, RSS 184 MB → 3.96 GB, and never be queryable);
 * - an 85 KB document text is chunked in bounded time (the tokenizer was quadratic);
 * - invalid gzip, an unknown encoding, JSON nested 10,000 deep and a bad percent-escape get 4xx, not 500;
 * - `__proto__`, `constructor` and `toString` keys in an OpenAI body get a 400 naming the key, not a 500;
 * - every reply carries nosniff, no-store and the service's Server header;
 * - 5xx bodies carry no server paths; readiness fails with no live blend worker or an unwritable store.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PRECOMPUTE_QUEUE } from '../../core/queue/contracts.js';
import { closeRedis, createRedis, keyPrefix } from '../../core/queue/redis.js';
import { STORY_SETS } from '../helpers/models.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

let redis: RedisHandle;
let stack: Stack;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({ redis, label: 'hostile', env: { CHUNK_TOKEN_BUDGET: '256' } });
});

afterAll(async () => {
  await stack?.close();
  await redis?.stop();
});

const story = STORY_SETS.flatMap((s) => s.chunks).join(' ');
const repeatTo = (bytes: number) => story.repeat(Math.ceil(bytes / story.length)).slice(0, bytes);

describe('cost checks at ingest', () => {
  it('refuses a 40 KB chunk with 413 before storing or queueing anything', async () => {
    const t0 = Date.now();
    const r = await stack.request('POST', '/v1/documents', {
      body: { id: 'huge-chunk', chunks: ['A short chunk.', repeatTo(40_000)] },
    });
    expect(r.status).toBe(413);
    expect(r.body.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', field: 'chunks.1' });
    // Refused by its length, before the tokenizer spends time on 40 KB.
    expect(r.body.error?.message).toMatch(
      /^chunks\.1: 40000 characters is more than the chunk budget of 256/,
    );
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect((await stack.request('GET', '/v1/documents/huge-chunk')).status).toBe(404);
    const client = createRedis(stack.config, 'producer');
    const queue = new Queue(PRECOMPUTE_QUEUE, {
      connection: client,
      prefix: keyPrefix(stack.config.queuePrefix),
    });
    try {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
      expect(Object.values(counts).reduce((a, n) => a + n, 0)).toBe(0);
    } finally {
      await queue.close();
      await closeRedis(client);
    }
  });

  it('refuses a chunk over the budget by its token count too', async () => {
    const r = await stack.request('POST', '/v1/documents', { body: { chunks: [repeatTo(1_400)] } });
    expect(r.status).toBe(413);
    expect(r.body.error?.message).toMatch(/chunks\.0: \d+ tokens is over the chunk budget of 256/);
  });

  it('chunks an 85 KB text in bounded time', async () => {
    const t0 = Date.now();
    const r = await stack.request('POST', '/v1/documents', {
      body: { id: 'long-text', text: repeatTo(85_000) },
    });
    expect(r.status).toBe(202);
    expect(r.body.chunks).toBeGreaterThan(85_000 / (256 * 32));
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect((await stack.request('DELETE', '/v1/documents/long-text')).status).toBe(200);
  });
});

describe('malformed requests', () => {
  const post = (raw: string | Buffer, headers: Record<string, string> = {}) =>
    stack.request('POST', '/v1/documents', {
      raw,
      headers: { 'content-type': 'application/json', ...headers },
    });

  it('answers 4xx for bad encodings, deep nesting and bad escapes', async () => {
    const cases: [string, Promise<Awaited<ReturnType<Stack['request']>>>, number, string][] = [
      ['invalid gzip', post('this is not gzip', { 'content-encoding': 'gzip' }), 400, 'INVALID_ARGUMENT'],
      ['unknown encoding', post('{}', { 'content-encoding': 'snappy' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [
        'unknown charset',
        post('{}', { 'content-type': 'application/json; charset=latin9' }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      ],
      [
        'JSON 10,000 deep',
        post(`{"metadata":{"a":${'['.repeat(10_000)}${']'.repeat(10_000)}}}`),
        400,
        'INVALID_JSON',
      ],
      ['bad percent-escape', stack.request('GET', '/v1/documents/%E0%A4%A'), 400, 'INVALID_ARGUMENT'],
      ['bad percent-escape (DELETE)', stack.request('DELETE', '/v1/documents/%ZZ'), 400, 'INVALID_ARGUMENT'],
    ];
    for (const [what, reply, status, code] of cases) {
      const r = await reply;
      expect(r.status, what).toBe(status);
      expect(r.body.error?.code, what).toBe(code);
    }
    // A valid gzip body still works.
    const ok = await post(gzipSync(JSON.stringify({ id: 'gz', text: 'Lily had a red ball.' })), {
      'content-encoding': 'gzip',
    });
    expect(ok.status).toBe(202);
  });

  it('refuses __proto__, constructor and toString keys on the OpenAI routes with a 400 naming them', async () => {
    const messages = [{ role: 'user', content: 'Lily' }];
    const cases: [string, string, string][] = [
      [
        '/v1/chat/completions',
        `"messages":${JSON.stringify(messages)},"__proto__":{"n":5,"max_tokens":9999}`,
        '__proto__',
      ],
      [
        '/v1/chat/completions',
        `"messages":${JSON.stringify(messages)},"constructor":{"prototype":{"stream":true}}`,
        'constructor',
      ],
      ['/v1/completions', `"prompt":"Lily","toString":1`, 'toString'],
    ];
    for (const [route, fields, key] of cases) {
      const r = await stack.request('POST', route, {
        raw: `{"model":"m",${fields}}`,
        headers: { 'content-type': 'application/json' },
      });
      expect(r.status, `${route} ${key}`).toBe(400);
      expect(r.body.error, `${route} ${key}`).toMatchObject({ param: key, type: 'invalid_request_error' });
    }
  });

  it('puts nosniff, no-store and its Server header on every reply', async () => {
    for (const r of [
      await stack.request('GET', '/healthz'),
      await stack.request('GET', '/v1/documents/nope'),
      await stack.request('POST', '/v1/documents', { raw: '{' }),
    ]) {
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      expect(r.headers.get('cache-control')).toBe('no-store');
      expect(r.headers.get('server')).toBe('cacheblend');
      expect(r.headers.get('x-powered-by')).toBeNull();
    }
  });
});

describe('server faults', () => {
  it('keep server paths out of 5xx bodies, and readiness names the unwritable store', async () => {
    // A store whose directory cannot exist: its parent is a regular file (ENOTDIR), a real filesystem fault.
    const blocker = path.join(stack.env.dataDir, 'blocker');
    await writeFile(blocker, 'not a directory');
    const broken = await startStack({
      redis,
      label: 'hostile-store',
      blend: false,
      precompute: false,
      env: { KV_STORE_URL: `file://${blocker}/kv` },
    });
    try {
      const r = await broken.request('POST', '/v1/documents', { body: { text: 'Lily had a red ball.' } });
      expect(r.status).toBe(503);
      expect(r.body.error?.code).toBe('STORAGE');
      expect(r.text).not.toMatch(/\/tmp\/|cacheblend-svc|blocker/);
      const ready = await broken.request('GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.error?.checks).toMatchObject({ store: expect.stringMatching(/^not writable/) });
      expect(ready.body.error?.checks?.workers).toBe('no live blend worker');
      expect(ready.text).not.toMatch(/\/tmp\/|cacheblend-svc|blocker/);
    } finally {
      await broken.close();
    }
  });

  it('is ready with its workers and a writable store', async () => {
    const ready = await stack.request('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.checks).toEqual({ redis: 'ok', store: 'ok', model: 'ok', workers: 'ok', queue: 'ok' });
  });
});
