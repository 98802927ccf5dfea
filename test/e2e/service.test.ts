/**
 * End to end over HTTP: the API and both workers (in this process, inference on a worker thread) against
 * a real redis-server and s3rver.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiServer } from '../../api/server.js';
import { main } from '../../cli/main.js';
import { chunkKey, chunkObjectKey } from '../../core/kv/format.js';
import {
  engineThreadInit,
  startEngineThread,
  type EngineThread,
} from '../../core/inference/engine-thread.js';
import { decodeManifest, manifestObjectKey, type DocumentManifest } from '../../core/documents/manifest.js';
import { openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { startPrecomputeWorker, type PrecomputeWorker } from '../../precompute/precompute-worker.js';
import { startBlendWorker, type BlendWorker } from '../../worker/blend-worker.js';
import { STORIES_DIR, STORY_SETS } from '../helpers/models.js';
import { s3Options, serviceConfig, waitFor, type TestServiceEnv } from '../helpers/service.js';
import { startRedis, startS3, type RedisHandle, type S3Handle } from '../helpers/services.js';

let redisServer: RedisHandle;
let s3: S3Handle;
let env: TestServiceEnv;
let thread: EngineThread;
let precompute: PrecomputeWorker | undefined;
let blend: BlendWorker | undefined;
let api: ApiServer;
let store: ObjectStore;
let fingerprint: string;

const MAX_TOKENS = 16;
const DOCS = STORY_SETS.slice(0, 3).map((set, i) => ({ id: `story-${i}`, text: set.chunks.join('\n\n') }));
const QUESTION = 'Lily threw the ball and the dog';

interface Reply {
  status: number;
  body: Record<string, unknown> & {
    error?: { code: string; message: string; field?: string; jobId?: string };
  };
  text: string;
}

async function http(
  method: string,
  path: string,
  body?: unknown,
  raw?: string,
  base = api.url,
): Promise<Reply> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body !== undefined || raw !== undefined ? { 'content-type': 'application/json' } : {},
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  let parsed: Reply['body'] = {};
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (metrics, SSE)
  }
  return { status: res.status, body: parsed, text };
}

beforeAll(async () => {
  [redisServer, s3] = await Promise.all([startRedis(), startS3()]);
  env = await serviceConfig({
    redis: redisServer,
    s3,
    label: 'e2e',
    env: { MAX_BODY_BYTES: '65536', CHUNK_TOKEN_BUDGET: '24' },
  });
  const { config } = env;
  thread = await startEngineThread(engineThreadInit(config, { threads: 1 }));
  [precompute, blend, api] = await Promise.all([
    startPrecomputeWorker({ config, thread, reconcileMs: 0 }),
    startBlendWorker({ config, thread }),
    startApi({ config, port: 0 }),
  ]);
  fingerprint = (await api.modelReady).fingerprint;
  store = openObjectStore(config.kvStoreUrl, { s3: s3Options(s3) });
});

afterAll(async () => {
  await Promise.all([blend?.close(), precompute?.close()]);
  await api?.close();
  await thread?.terminate();
  await store?.close();
  await Promise.all([redisServer?.stop(), s3?.stop(), env?.cleanup()]);
});

async function manifest(id: string): Promise<DocumentManifest> {
  return decodeManifest((await store.get(manifestObjectKey(id)))!);
}

async function cli(chunks: string[], mode: string): Promise<{ text: string; generatedTokens: number[] }> {
  let out = '';
  const code = await main(
    [
      'generate',
      '--model',
      STORIES_DIR,
      ...chunks.flatMap((c) => ['--chunk', c]),
      '--question',
      QUESTION,
      '--mode',
      mode,
      '--max-tokens',
      String(MAX_TOKENS),
      '--json',
    ],
    (s) => (out += s),
  );
  expect(code).toBe(0);
  return JSON.parse(out);
}

describe('CacheBlend service over HTTP', () => {
  it('is healthy and ready', async () => {
    expect(await http('GET', '/healthz')).toMatchObject({ status: 200, body: { status: 'ok' } });
    const ready = await http('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ status: 'ready', checks: { redis: 'ok', store: 'ok', model: 'ok' } });
  });

  it('ingests three documents and precomputes their chunks', async () => {
    for (const d of DOCS) {
      const r = await http('POST', '/v1/documents', { ...d, metadata: { title: d.id } });
      expect(r.status).toBe(202);
      expect(r.body.id).toBe(d.id);
      expect(r.body.chunks).toBeGreaterThan(1);
    }
    for (const d of DOCS) {
      const s = await waitFor(
        async () => {
          const r = await http('GET', `/v1/documents/${d.id}`);
          expect(r.status).toBe(200);
          return r.body.status === 'ready' ? r.body : null;
        },
        30_000,
        `${d.id} ready`,
      );
      expect(s).toMatchObject({ id: d.id, metadata: { title: d.id }, progress: { fraction: 1 } });
      expect((s.chunks as { status: string }[]).every((c) => c.status === 'ready')).toBe(true);
    }
  });

  it('stores manifests and chunk objects under the documented keys', async () => {
    const listed = new Set<string>();
    for await (const k of store.list('kv/')) listed.add(k);
    const expected = new Set<string>();
    for (const d of DOCS) {
      const m = await manifest(d.id);
      expect(m.fingerprint).toBe(fingerprint);
      expect(
        m.chunks
          .map((c) => c.text)
          .join(' ')
          .split(/\s+/),
      ).toEqual(d.text.split(/\s+/));
      for (const c of m.chunks) {
        expect(c.key).toBe(chunkKey(fingerprint, c.tokenIds));
        expected.add(chunkObjectKey(fingerprint, c.key));
      }
    }
    expect(listed).toEqual(expected);
  });

  for (const mode of ['full', 'prefix', 'reuse', 'blend']) {
    it(`answers in ${mode} mode exactly as the CLI does for the same chunks`, async () => {
      const r = await http('POST', '/v1/query', {
        question: QUESTION,
        documents: DOCS.map((d) => d.id),
        mode,
        maxTokens: MAX_TOKENS,
      });
      expect(r.status).toBe(200);
      const chunks = (await Promise.all(DOCS.map((d) => manifest(d.id)))).flatMap((m) => m.chunks);
      const expected = await cli(
        chunks.map((c) => c.text),
        mode,
      );
      expect(expected.text.length).toBeGreaterThan(0);
      expect(r.body.answer).toBe(expected.text);
      expect(r.body.tokens).toEqual(expected.generatedTokens);
      const contextTokens = chunks.reduce((a, c) => a + c.tokenIds.length, 0);
      expect(r.body).toMatchObject({ mode, contextTokens });
      const expectRecomputed = { full: contextTokens, reuse: 0, blend: Math.floor(0.15 * contextTokens) }[
        mode
      ];
      if (expectRecomputed !== undefined) expect(r.body.recomputedTokens).toBe(expectRecomputed);
      const timings = r.body.timings as Record<string, number>;
      for (const t of ['loadMs', 'computeMs', 'queueMs', 'totalMs'])
        expect(timings[t]).toBeGreaterThanOrEqual(0);
      expect(r.body.ttftMs).toBeGreaterThan(0);
      const cache = r.body.cache as { hits: Record<string, number>; misses: number };
      const opened = mode === 'full' ? 0 : mode === 'prefix' ? 1 : chunks.length;
      expect(cache.hits.lru + cache.hits.disk + cache.hits.store).toBe(opened);
      expect(cache.misses).toBe(0);
    });
  }

  it('serves the second query of the same chunks from the LRU', async () => {
    const r = await http('POST', '/v1/query', { question: 'Tom opened the box', documents: ['story-1'] });
    expect(r.status).toBe(200);
    const n = (await manifest('story-1')).chunks.length;
    expect((r.body.cache as { hits: Record<string, number> }).hits).toEqual({
      gpu: 0,
      lru: n,
      disk: 0,
      store: 0,
    });
  });

  it('runs a query asynchronously and reports it under /v1/jobs', async () => {
    const r = await http('POST', '/v1/query?async=1', {
      question: QUESTION,
      documents: ['story-0'],
      maxTokens: 8,
    });
    expect(r.status).toBe(202);
    const jobId = r.body.jobId as string;
    const done = await waitFor(
      async () => {
        const j = await http('GET', `/v1/jobs/${jobId}`);
        expect(j.status).toBe(200);
        return j.body.state === 'completed' ? j.body : null;
      },
      20_000,
      'job completed',
    );
    const sync = await http('POST', '/v1/query', {
      question: QUESTION,
      documents: ['story-0'],
      maxTokens: 8,
    });
    expect((done.result as { answer: string }).answer).toBe(sync.body.answer);
    expect((await http('GET', '/v1/jobs/no-such-job')).status).toBe(404);
  });

  it('streams tokens as server-sent events', async () => {
    const body = { question: QUESTION, documents: ['story-0', 'story-2'], maxTokens: 12 };
    const r = await http('POST', '/v1/query', { ...body, stream: true });
    expect(r.status).toBe(200);
    const events = r.text
      .trim()
      .split('\n\n')
      .map((block) => {
        const [event, data] = block.split('\n');
        return { event: event.slice('event: '.length), data: JSON.parse(data.slice('data: '.length)) };
      });
    expect(events[0].event).toBe('job');
    expect(events.at(-1)!.event).toBe('done');
    const tokens = events.filter((e) => e.event === 'token');
    expect(tokens.length).toBeGreaterThan(1);
    const answer = events.at(-1)!.data.answer as string;
    expect(tokens.map((e) => e.data.delta).join('')).toBe(answer);
    expect((await http('POST', '/v1/query', body)).body.answer).toBe(answer);
  });

  it('answers 504 with the job id when a query outlives QUERY_TIMEOUT_MS, and cancels the job', async () => {
    const impatient = await serviceConfig({
      redis: redisServer,
      s3,
      label: 'e2e',
      env: {
        QUEUE_PREFIX: env.config.queuePrefix,
        KV_STORE_URL: env.config.kvStoreUrl,
        QUERY_TIMEOUT_MS: '1',
      },
    });
    const other = await startApi({ config: impatient.config, port: 0, model: await api.modelReady });
    try {
      const r = await http(
        'POST',
        '/v1/query',
        { question: QUESTION, documents: ['story-0'] },
        undefined,
        other.url,
      );
      expect(r.status).toBe(504);
      expect(r.body.error).toMatchObject({ code: 'TIMEOUT' });
      const jobId = r.body.error!.jobId!;
      // Removed while it waited, or stopped by its worker: never answered for nobody.
      const after = await waitFor(
        async () => {
          const j = await http('GET', `/v1/jobs/${jobId}`);
          return j.status === 404 || j.body.state === 'failed' ? j : null;
        },
        20_000,
        'the job cancelled',
      );
      if (after.status === 200)
        expect(after.body.error, JSON.stringify(after.body)).toMatchObject({ code: 'CANCELLED' });
    } finally {
      await other.close();
      await impatient.cleanup();
    }
  });

  it('rejects bad input with 400 naming the field, 404 for unknown ids, 413 for big bodies', async () => {
    const bad: [string, string, unknown, string][] = [
      ['POST', '/v1/query', {}, 'question'],
      ['POST', '/v1/query', { question: '', documents: ['story-0'] }, 'question'],
      ['POST', '/v1/query', { question: 'q', documents: [] }, 'documents'],
      ['POST', '/v1/query', { question: 'q', documents: ['../etc'] }, 'documents.0'],
      ['POST', '/v1/query', { question: 'q', documents: ['story-0'], mode: 'fast' }, 'mode'],
      ['POST', '/v1/query', { question: 'q', documents: ['story-0'], ratio: 1.5 }, 'ratio'],
      ['POST', '/v1/query', { question: 'q', documents: ['story-0'], maxTokens: 2.5 }, 'maxTokens'],
      ['POST', '/v1/query', { question: 'q', documents: ['story-0'], temperature: -1 }, 'temperature'],
      ['POST', '/v1/query', { question: 'q', documents: ['story-0'], colour: 'red' }, 'colour'],
      ['POST', '/v1/documents', {}, 'text'],
      ['POST', '/v1/documents', { text: 'a', chunks: ['b'] }, 'text'],
      ['POST', '/v1/documents', { text: '' }, 'text'],
      ['POST', '/v1/documents', { chunks: ['ok', ''] }, 'chunks.1'],
      ['POST', '/v1/documents', { id: 'has space', text: 'x' }, 'id'],
      ['POST', '/v1/documents', { text: 'x', metadata: 'no' }, 'metadata'],
      ['POST', '/v1/documents', [1, 2], 'body'],
    ];
    for (const [method, path, body, field] of bad) {
      const r = await http(method, path, body);
      expect(r.status, `${JSON.stringify(body)}`).toBe(400);
      expect(r.body.error?.code).toBe('INVALID_ARGUMENT');
      expect(r.body.error?.field).toBe(field);
      expect(r.body.error?.message.startsWith(`${field}: `)).toBe(true);
    }
    const json = await http('POST', '/v1/query', undefined, '{"question": ');
    expect(json.status).toBe(400);
    expect(json.body.error?.code).toBe('INVALID_JSON');

    const long = await http('POST', '/v1/query', { question: 'q', documents: ['story-0'], maxTokens: 4000 });
    expect(long.status).toBe(400);
    expect(long.body.error).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'maxTokens' });
    expect(long.body.error?.message).toContain("exceeds the model's context of 512 tokens");

    const missing = await http('POST', '/v1/query', { question: 'q', documents: ['story-0', 'nope'] });
    expect(missing.status).toBe(404);
    expect(missing.body.error?.message).toContain('"nope"');
    expect((await http('GET', '/v1/documents/nope')).status).toBe(404);
    expect((await http('DELETE', '/v1/documents/nope')).status).toBe(404);
    expect((await http('GET', '/v1/nothing-here')).body.error?.code).toBe('NOT_FOUND');

    const big = await http('POST', '/v1/documents', { text: 'word '.repeat(20_000) });
    expect(big.status).toBe(413);
    expect(big.body.error?.code).toBe('PAYLOAD_TOO_LARGE');
    for (const r of [json, missing, big]) expect(r.text).not.toMatch(/\n\s+at /);
  });

  it('exports Prometheus metrics', async () => {
    const r = await http('GET', '/metrics');
    expect(r.status).toBe(200);
    for (const name of [
      'cacheblend_http_request_duration_seconds_bucket',
      'cacheblend_job_duration_seconds_bucket{le="0.1",queue="blend"',
      'cacheblend_query_ttft_seconds_count{mode="blend"}',
      'cacheblend_chunk_cache_hits_total{tier="lru"}',
      'cacheblend_chunk_cache_hits_total{tier="store"}',
      'cacheblend_kv_bytes_loaded_total{tier="store"}',
      'cacheblend_recompute_ratio_bucket',
      'cacheblend_precompute_bytes_written_total',
    ]) {
      expect(r.text).toContain(name);
    }
  });

  it('deletes a document and the chunk objects only it used', async () => {
    const m = await manifest('story-2');
    const r = await http('DELETE', '/v1/documents/story-2');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: 'story-2', deleted: true, chunksDeleted: m.chunks.length });
    for (const c of m.chunks) expect(await store.head(chunkObjectKey(fingerprint, c.key))).toBeNull();
    expect(await store.head(manifestObjectKey('story-2'))).toBeNull();
    expect((await http('GET', '/v1/documents/story-2')).status).toBe(404);
    const kept = await manifest('story-0');
    for (const c of kept.chunks) expect(await store.head(chunkObjectKey(fingerprint, c.key))).not.toBeNull();
  });

  it('answers 503 when the object store is unreachable, and still answers queries', async () => {
    await s3.stop();
    const t0 = Date.now();
    const ingest = await http('POST', '/v1/documents', { text: 'The store is down.' });
    expect(ingest.status).toBe(503);
    expect(ingest.body.error?.code).toBe('UNAVAILABLE');
    const ready = await http('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.error?.message).toMatch(/store/);
    expect(Date.now() - t0).toBeLessThan(15_000);
    // Status lives in Redis; cached chunks live in the worker's LRU: both still work.
    expect((await http('GET', '/v1/documents/story-0')).status).toBe(200);
    const q = await http('POST', '/v1/query', { question: QUESTION, documents: ['story-0'], maxTokens: 4 });
    expect(q.status).toBe(200);
  });

  it('answers 503 (fast, no hang) while Redis is down', async () => {
    await Promise.all([blend?.close(), precompute?.close()]);
    blend = precompute = undefined;
    await redisServer.stop();
    const t0 = Date.now();
    const replies = await Promise.all([
      http('POST', '/v1/documents', { text: 'Hello there.' }),
      http('GET', '/v1/documents/story-0'),
      http('DELETE', '/v1/documents/story-0'),
      http('POST', '/v1/query', { question: QUESTION, documents: ['story-0'] }),
      http('GET', '/readyz'),
    ]);
    for (const r of replies) {
      expect(r.status).toBe(503);
      expect(r.body.error?.code).toBe('UNAVAILABLE');
    }
    expect(replies.at(-1)!.body.error?.message).toMatch(/redis/i);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
