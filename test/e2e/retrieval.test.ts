/**
 * Retrieval, raw chunks, templates and sampling controls over HTTP: two API processes (two startApi
 * instances) sharing one Redis and one S3-compatible store, both workers on one inference thread.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiServer } from '../../api/server.js';
import { main } from '../../cli/main.js';
import {
  engineThreadInit,
  startEngineThread,
  type EngineThread,
} from '../../core/inference/engine-thread.js';
import { startPrecomputeWorker, type PrecomputeWorker } from '../../precompute/precompute-worker.js';
import { startBlendWorker, type BlendWorker } from '../../worker/blend-worker.js';
import { requestJson } from '../helpers/http.js';
import { STORIES_DIR, STORY_SETS } from '../helpers/models.js';
import { serviceConfig, waitFor, type TestServiceEnv } from '../helpers/service.js';
import { startRedis, startS3, type RedisHandle, type S3Handle } from '../helpers/services.js';

let redisServer: RedisHandle;
let s3: S3Handle;
let env: TestServiceEnv;
let thread: EngineThread;
let precompute: PrecomputeWorker;
let blend: BlendWorker;
let apiA: ApiServer;
let apiB: ApiServer;

const MAX_TOKENS = 16;
const NAMES = ['Tom', 'Sue', 'Max', 'Ben', 'Mia', 'Sam', 'Lucy', 'Jack', 'Anna', 'Tim', 'Zoe'];
const THINGS = ['kite', 'drum', 'boat', 'hat', 'cake', 'book', 'car', 'cup', 'doll', 'bell'];
const PLACES = ['park', 'farm', 'beach', 'forest', 'garden', 'school', 'house', 'town'];
/** The document whose chunk holds the answer, among 54 others that share none of its words. */
const NEEDLE = {
  id: 'doc-pip',
  text:
    'Once upon a time, a little bird sang in the tree. The sun was warm and bright.\n\n' +
    'Pip liked fish and cold snow.\n\nThe secret word of Pip the penguin was marmalade.\n\n' +
    'Then everyone went home to sleep. The end.',
};
const NEEDLE_QUESTION = 'What was the secret word of Pip the penguin?';

function corpusDocument(i: number): { id: string; text: string } {
  const name = NAMES[i % NAMES.length];
  const thing = THINGS[(i * 7) % THINGS.length];
  const place = PLACES[(i * 3) % PLACES.length];
  const friend = NAMES[(i + 5) % NAMES.length];
  return {
    id: `doc-${String(i).padStart(2, '0')}`,
    text:
      `${name} had a red ${thing}. ${name} liked to play with the ${thing} at the ${place}.\n\n` +
      `One day ${friend} came to the ${place}. They played all day and had fun.`,
  };
}

/** About three times stories260K's 512-token context. */
const BIG_TEXT = Array.from(
  { length: 72 },
  (_, i) =>
    `${NAMES[i % NAMES.length]} went to the ${PLACES[i % PLACES.length]} with a ${THINGS[i % THINGS.length]}. ` +
    `It was a happy day.`,
).join('\n\n');

interface Reply {
  status: number;
  body: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
}

function http(method: string, path: string, body?: unknown, base = apiA.url): Promise<Reply> {
  return requestJson<Reply['body']>(`${base}${path}`, { method, body, timeoutMs: 60_000 });
}

async function cli(
  args: string[],
): Promise<{ text: string; generatedTokens: number[]; prefixTokens: number }> {
  let out = '';
  const code = await main(
    ['generate', '--model', STORIES_DIR, ...args, '--max-tokens', String(MAX_TOKENS), '--json'],
    (s) => (out += s),
  );
  expect(code).toBe(0);
  return JSON.parse(out);
}

beforeAll(async () => {
  [redisServer, s3] = await Promise.all([startRedis(), startS3()]);
  env = await serviceConfig({
    redis: redisServer,
    s3,
    label: 'retrieval',
    env: { CHUNK_TOKEN_BUDGET: '24' },
  });
  const { config } = env;
  thread = await startEngineThread(engineThreadInit(config, { threads: 1 }));
  [precompute, blend, apiA, apiB] = await Promise.all([
    startPrecomputeWorker({ config, thread, reconcileMs: 0 }),
    startBlendWorker({ config, thread }),
    startApi({ config, port: 0 }),
    startApi({ config, port: 0 }),
  ]);
  await Promise.all([apiA.modelReady, apiB.modelReady]);
}, 120_000);

afterAll(async () => {
  await Promise.all([blend?.close(), precompute?.close()]);
  await Promise.all([apiA?.close(), apiB?.close()]);
  await thread?.terminate();
  await Promise.all([redisServer?.stop(), s3?.stop(), env?.cleanup()]);
});

/** The chunk of a document whose text holds `words`. */
async function chunkHolding(id: string, words: string): Promise<number> {
  const m = await apiA.docs.manifest(id);
  const index = m!.chunks.findIndex((c) => c.text.includes(words));
  expect(index).toBeGreaterThanOrEqual(0);
  return index;
}

type Used = { document: string; index: number; score: number; tokens: number };

describe('retrieval over a corpus', () => {
  it('ingests 55 documents through one API and lists them, paginated, with status', async () => {
    const docs = [...Array.from({ length: 54 }, (_, i) => corpusDocument(i)), NEEDLE];
    for (const d of docs) expect((await http('POST', '/v1/documents', d)).status).toBe(202);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Reply = await http('GET', `/v1/documents?limit=20${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.documents.length).toBeLessThanOrEqual(20);
      for (const d of page.body.documents) {
        expect(['pending', 'ready', 'failed']).toContain(d.status);
        expect(d.chunks).toBeGreaterThan(0);
        seen.push(d.id);
      }
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual(docs.map((d) => d.id).sort());
    const bad = await http('GET', '/v1/documents?limit=0');
    expect(bad.status).toBe(400);
    expect(bad.body.error.field).toBe('limit');
  });

  it('answers a question over the whole corpus through the other API, using the chunk that holds the answer', async () => {
    const needle = await chunkHolding(NEEDLE.id, 'marmalade');
    const r = await waitFor(
      async () => {
        const q = await http(
          'POST',
          '/v1/query',
          { question: NEEDLE_QUESTION, maxTokens: MAX_TOKENS },
          apiB.url,
        );
        expect(q.status).toBe(200);
        return (q.body.retrieval.chunks as Used[]).some((c) => c.document === NEEDLE.id) ? q : null;
      },
      15_000,
      'API B to index the needle',
    );
    const used = r.body.retrieval.chunks as Used[];
    expect(used).toContainEqual(expect.objectContaining({ document: NEEDLE.id, index: needle }));
    // The needle's chunk ranks first, and topK 1 keeps just it.
    const best = [...used].sort((a, b) => b.score - a.score)[0];
    expect(best).toMatchObject({ document: NEEDLE.id, index: needle });
    const one = await http(
      'POST',
      '/v1/query',
      { question: NEEDLE_QUESTION, topK: 1, maxTokens: 4 },
      apiB.url,
    );
    expect(one.body.retrieval.chunks).toEqual([
      expect.objectContaining({ document: NEEDLE.id, index: needle }),
    ]);
    expect(one.body.retrieval.leftOut).toBeGreaterThan(0);
    expect(one.body.contextTokens).toBe(one.body.retrieval.chunks[0].tokens);
  });

  it('puts chunks in document order by default and in relevance order on request', async () => {
    const body = { question: 'Tom had a red kite at the park', maxTokens: 4, topK: 8 };
    const byDoc = (await http('POST', '/v1/query', body)).body.retrieval;
    const byRel = (await http('POST', '/v1/query', { ...body, order: 'relevance' })).body.retrieval;
    const key = (c: Used) => `${c.document}#${String(c.index).padStart(4, '0')}`;
    expect(byDoc.chunks.map(key)).toEqual([...byDoc.chunks.map(key)].sort());
    const scores = byRel.chunks.map((c: Used) => c.score);
    expect(scores).toEqual([...scores].sort((a: number, b: number) => b - a));
    expect(new Set(byRel.chunks.map(key))).toEqual(new Set(byDoc.chunks.map(key)));
  });

  it('follows another process: a document ingested and deleted through A appears in and leaves B', async () => {
    const doc = { id: 'doc-owl', text: 'Olly the owl hooted at the silver moon every night.' };
    expect((await http('POST', '/v1/documents', doc)).status).toBe(202);
    const question = 'Who hooted at the silver moon?';
    const usesOwl = async () => {
      const q = await http('POST', '/v1/query', { question, maxTokens: 4 }, apiB.url);
      expect(q.status).toBe(200);
      return (q.body.retrieval.chunks as Used[]).some((c) => c.document === doc.id);
    };
    await waitFor(usesOwl, 15_000, 'B to see the ingest');
    const owl = await apiA.docs.manifest(doc.id);
    expect(apiB.corpus.index.keysOf(doc.id)).toEqual(owl!.chunks.map((c) => c.key));
    expect((await http('DELETE', `/v1/documents/${doc.id}`)).status).toBe(200);
    // B's index drops it (not merely its released chunks being skipped at query time).
    await waitFor(async () => apiB.corpus.index.keysOf(doc.id) === undefined, 15_000, 'B to see the delete');
    expect(await usesOwl()).toBe(false);
  });

  it('rebuilds the index on start: a new API process finds the corpus', async () => {
    const apiC = await startApi({ config: env.config, port: 0, model: await apiA.modelReady });
    try {
      const q = await http(
        'POST',
        '/v1/query',
        { question: NEEDLE_QUESTION, topK: 1, maxTokens: 4 },
        apiC.url,
      );
      expect(q.status).toBe(200);
      expect(q.body.retrieval.chunks[0].document).toBe(NEEDLE.id);
      expect(apiC.corpus.index.documentCount).toBe(55);
    } finally {
      await apiC.close();
    }
  });

  it('answers over a document three times longer than the context, keeping what fits', async () => {
    const ingest = await http('POST', '/v1/documents', { id: 'big', text: BIG_TEXT });
    expect(ingest.status).toBe(202);
    const m = await apiA.docs.manifest('big');
    const total = m!.chunks.reduce((a, c) => a + c.tokenIds.length, 0);
    expect(total).toBeGreaterThan(3 * 512);
    for (const mode of ['blend', 'full']) {
      const q = await http('POST', '/v1/query', {
        question: 'Zoe went to the beach with a',
        documents: ['big'],
        mode,
        maxTokens: MAX_TOKENS,
      });
      expect(q.status).toBe(200);
      expect(q.body.answer.length).toBeGreaterThan(0);
      expect(q.body.promptTokens + MAX_TOKENS).toBeLessThanOrEqual(512);
      const r = q.body.retrieval;
      expect(r.leftOut).toBeGreaterThan(0);
      expect(r.chunks.length + r.leftOut).toBe(m!.chunks.length);
      expect(q.body.contextTokens).toBe(r.chunks.reduce((a: number, c: Used) => a + c.tokens, 0));
      expect(q.body.contextTokens).toBeLessThanOrEqual(r.budget);
      // The best-matching chunk is among those used.
      const best = m!.chunks.findIndex((c) => c.text.includes('Zoe went to the beach'));
      expect(r.chunks.map((c: Used) => c.index)).toContain(best);
    }
  });
});

describe('raw chunks, templates and sampling controls', () => {
  const set = STORY_SETS[3];

  for (const mode of ['blend', 'full', 'prefix', 'reuse']) {
    it(`answers raw chunks (${mode}) exactly as the CLI does, computing them once`, async () => {
      const body = { question: set.question, chunks: set.chunks, mode, maxTokens: MAX_TOKENS };
      const first = await http('POST', '/v1/query', body);
      expect(first.status).toBe(200);
      const expected = await cli([
        ...set.chunks.flatMap((c) => ['--chunk', c]),
        '--question',
        set.question,
        '--mode',
        mode,
      ]);
      expect(first.body.answer).toBe(expected.text);
      expect(first.body.tokens).toEqual(expected.generatedTokens);
      expect(first.body.retrieval).toBeUndefined();
      const again = await http('POST', '/v1/query', body);
      expect(again.body.answer).toBe(expected.text);
      const opened = mode === 'full' ? 0 : mode === 'prefix' ? 1 : set.chunks.length;
      if (mode === 'blend') expect(first.body.cache.misses).toBe(opened); // the first raw query computes them
      expect(again.body.cache.misses).toBe(0);
      expect(again.body.cache.hits.lru + again.body.cache.hits.disk + again.body.cache.hits.store).toBe(
        opened,
      );
    });
  }

  it('caches a system prompt as a prefix and answers as the CLI does with --system', async () => {
    const system = 'Once upon a time, there was a kind old man who told stories.';
    for (const mode of ['blend', 'prefix']) {
      const r = await http('POST', '/v1/query', {
        question: set.question,
        chunks: set.chunks,
        system,
        mode,
        maxTokens: MAX_TOKENS,
      });
      expect(r.status).toBe(200);
      const args = [...set.chunks.flatMap((c) => ['--chunk', c]), '--question', set.question, '--mode', mode];
      const expected = await cli([...args, '--system', system]);
      expect(expected.prefixTokens).toBeGreaterThan(0);
      expect(r.body).toMatchObject({
        answer: expected.text,
        prefixTokens: expected.prefixTokens,
        template: 'none',
      });
    }
    const chat = await http('POST', '/v1/query', { question: 'q', chunks: ['a b'], template: 'chat' });
    expect(chat.status).toBe(400);
    expect(chat.body.error.message).toMatch(/no chat_template/);
  });

  it('stops at a stop sequence (finish reason stop) and reports length otherwise', async () => {
    const body = { question: set.question, chunks: set.chunks, maxTokens: MAX_TOKENS, stopAtEos: undefined };
    delete body.stopAtEos;
    const plain = await http('POST', '/v1/query', body);
    expect(plain.body.tokens.length).toBe(MAX_TOKENS);
    expect(plain.body.finishReason).toBe('length');
    const answer = plain.body.answer as string;
    const stop = answer.slice(6, 10);
    const stopped = await http('POST', '/v1/query', { ...body, stop: [stop, 'zzzz'] });
    expect(stopped.body.finishReason).toBe('stop');
    expect(stopped.body.answer).toBe(answer.slice(0, answer.indexOf(stop)));
    expect(stopped.body.tokens.length).toBeLessThan(MAX_TOKENS);
    // Streamed: the deltas never include the stop sequence.
    const sse = await http('POST', '/v1/query', { ...body, stop, stream: true });
    const events = sse.text
      .trim()
      .split('\n\n')
      .map((b) => b.split('\n'));
    const deltas = events.filter((e) => e[0] === 'event: token').map((e) => JSON.parse(e[1].slice(6)).delta);
    expect(deltas.join('')).toBe(stopped.body.answer);
  });

  it('samples with topP and sampleTopK reproducibly per seed', async () => {
    const body = {
      question: set.question,
      chunks: set.chunks,
      maxTokens: MAX_TOKENS,
      temperature: 1,
      topP: 0.9,
      sampleTopK: 20,
    };
    const a = await http('POST', '/v1/query', { ...body, seed: 1 });
    const b = await http('POST', '/v1/query', { ...body, seed: 1 });
    expect(a.status).toBe(200);
    expect(a.body.tokens).toEqual(b.body.tokens);
    const bad = await http('POST', '/v1/query', { ...body, topP: 0 });
    expect(bad.body.error).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'topP' });
  });

  it('chooses ratio "auto" as max(r_load, r_min) from measured load and layer speeds', async () => {
    const doc = { id: 'fresh', text: STORY_SETS[4].chunks.join('\n\n') };
    expect((await http('POST', '/v1/documents', doc)).status).toBe(202);
    await waitFor(async () => (await http('GET', '/v1/documents/fresh')).body.status === 'ready', 20_000);
    // Ready in the store, not yet in this worker's LRU: the caches are read layer by layer from the store.
    const r = await http('POST', '/v1/query', {
      question: 'Tom',
      documents: ['fresh'],
      ratio: 'auto',
      maxTokens: 4,
    });
    expect(r.status).toBe(200);
    expect(r.body.cache.hits.store).toBeGreaterThan(0);
    const { minRatio, layerLoadMs, tokenLayerMs } = r.body.autoRatio;
    expect(minRatio).toBe(0.15);
    expect(layerLoadMs).toBeGreaterThan(0);
    expect(tokenLayerMs).toBeGreaterThan(0);
    const rLoad = layerLoadMs / (tokenLayerMs * r.body.contextTokens);
    expect(r.body.ratio).toBeCloseTo(Math.min(1, Math.max(rLoad, minRatio)), 10);
    expect(r.body.recomputedTokens).toBe(Math.round(r.body.ratio * r.body.contextTokens));
    const fixed = await http('POST', '/v1/query', { question: 'Tom', documents: ['fresh'], ratio: 0.5 });
    expect(fixed.body.autoRatio).toBeUndefined();
    expect(fixed.body.ratio).toBe(0.5);
  });

  it('rejects documents and chunks together, and a question that leaves no room', async () => {
    const both = await http('POST', '/v1/query', { question: 'q', documents: ['big'], chunks: ['x'] });
    expect(both.body.error).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'chunks' });
    // Measured in the API before anything is queued: 413, naming the field.
    const tooLong = await http('POST', '/v1/query', { question: 'word '.repeat(600) });
    expect(tooLong.status).toBe(413);
    expect(tooLong.body.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', field: 'question' });
    const rawTooLong = await http('POST', '/v1/query', { question: 'q', chunks: [BIG_TEXT] });
    expect(rawTooLong.status).toBe(413);
    expect(rawTooLong.body.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', field: 'chunks' });
  });
});
