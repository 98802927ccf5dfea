/**
 * Keeps docs/walkthrough.md true: the same two documents and the same cross-chunk question, over HTTP,
 * with cbqa-3M (models/cbqa-3M), against a real redis-server and a file store. Full and blend answer
 * " green" (the colour is stated only across the chunk boundary), reuse answers " black"; over the
 * inventory document K deviation misses O125's colour and the default selection answers it; /v1/models
 * reports a stored calibration. The walkthrough's
 * CLI command, run as written, prints the documented JSON (times by type).
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'shell-quote';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiServer } from '../../api/server.js';
import {
  engineThreadInit,
  startEngineThread,
  type EngineThread,
} from '../../core/inference/engine-thread.js';
import { startPrecomputeWorker, type PrecomputeWorker } from '../../precompute/precompute-worker.js';
import { startBlendWorker, type BlendWorker } from '../../worker/blend-worker.js';
import { main } from '../../cli/main.js';
import { replyDifferences } from '../helpers/readme-examples.js';
import { CALIBRATION_SAMPLE, calibrate, writeCalibration } from '../../core/eval/index.js';
import { DEFAULT_ATTENTION, DEFAULT_SELECTION } from '../../core/blend/index.js';
import { Engine } from '../../core/model/engine.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import { openObjectStore } from '../../core/storage/index.js';
import { CBQA_DIR } from '../helpers/models.js';
import { serviceConfig, waitFor, type TestServiceEnv } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';

/** The walkthrough's documents: explicit chunks, each a few facts ending in `<sep>`. */
const WALKTHROUGH_DOCS = [
  {
    id: 'purchases',
    chunks: [
      'O89 is pink . P221 owns O104 . O43 is white . O115 is black . P282 bought O140 . <sep>',
      'it is green . the mayor of C44 is P214 . P74 owns O89 . O104 is red . <sep>',
    ],
  },
  {
    id: 'residents',
    chunks: ['P180 lives in C73 . P278 lives in C44 . P139 bought O110 . it is white . <sep>'],
  },
];
const WALKTHROUGH_QUESTION = '<q> color of O140 ? <a>';
/** The miss of K deviation that the default selection fixes: `O125 is green` after the first chunk. */
const INVENTORY = {
  id: 'inventory',
  chunks: [
    'P68 bought O122 . it is red . P218 owns O71 . P239 lives in C42 . P285 bought O135 . <sep>',
    'it is pink . O125 is green . the mayor of C55 is P69 . O37 is pink . O71 is black . the mayor of C42 is P83 . <sep>',
  ],
};

let redis: RedisHandle;
let env: TestServiceEnv;
let thread: EngineThread;
let precompute: PrecomputeWorker | undefined;
let blend: BlendWorker | undefined;
let api: ApiServer;

async function post(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${api.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

beforeAll(async () => {
  redis = await startRedis();
  // The inventory's second chunk is 31 tokens: over the test default budget, within the service's (256).
  env = await serviceConfig({
    redis,
    label: 'walkthrough',
    env: { MODEL: CBQA_DIR, CHUNK_TOKEN_BUDGET: '256' },
  });
  const { config } = env;
  thread = await startEngineThread(engineThreadInit(config, { threads: 1 }));
  [precompute, blend, api] = await Promise.all([
    startPrecomputeWorker({ config, thread, reconcileMs: 0 }),
    startBlendWorker({ config, thread }),
    startApi({ config, port: 0 }),
  ]);
  await api.modelReady;
});

afterAll(async () => {
  await Promise.all([blend?.close(), precompute?.close()]);
  await api?.close();
  await thread?.terminate();
  await Promise.all([redis?.stop(), env?.cleanup()]);
});

describe('docs/walkthrough.md with cbqa-3M', () => {
  it('ingests the fact documents as explicit chunks', async () => {
    for (const d of [...WALKTHROUGH_DOCS, INVENTORY]) {
      const r = await post('/v1/documents', d);
      expect(r.status).toBe(202);
      expect(r.body).toEqual({ id: d.id, chunks: d.chunks.length, enqueued: d.chunks.length });
    }
    for (const d of [...WALKTHROUGH_DOCS, INVENTORY]) {
      await waitFor(
        async () => {
          const res = await fetch(`${api.url}/v1/documents/${d.id}`);
          return ((await res.json()) as { status: string }).status === 'ready';
        },
        30_000,
        `${d.id} ready`,
      );
    }
  });

  for (const [mode, answer, recomputed] of [
    ['full', ' green', 60],
    ['reuse', ' black', 0],
    ['blend', ' green', 9],
  ] as const) {
    it(`answers the cross-chunk question in ${mode} mode with "${answer}"`, async () => {
      const r = await post('/v1/query', {
        question: WALKTHROUGH_QUESTION,
        documents: WALKTHROUGH_DOCS.map((d) => d.id),
        mode,
        maxTokens: 1,
      });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({
        answer,
        mode,
        promptTokens: 67,
        contextTokens: 60,
        recomputedTokens: recomputed,
      });
    });
  }

  for (const [label, extra, answer, recomputed] of [
    ['full', { mode: 'full' }, ' green', 53],
    ['reuse', { mode: 'reuse' }, ' pink', 0],
    ['K deviation', { selection: 'deviation' }, ' pink', 7],
    ['the default selection', {}, ' green', 7],
    ['question attention', { selection: 'question' }, ' green', 7],
  ] as const) {
    it(`answers O125 over inventory with ${label}: "${answer}"`, async () => {
      const r = await post('/v1/query', {
        question: '<q> color of O125 ? <a>',
        documents: ['inventory'],
        maxTokens: 1,
        ...extra,
      });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ answer, contextTokens: 53, recomputedTokens: recomputed });
    });
  }

  it('reports the stored calibration in /v1/models', async () => {
    const models = async () =>
      ((await (await fetch(`${api.url}/v1/models`)).json()) as { data: { cacheblend: unknown }[] }).data[0];
    expect((await models()).cacheblend).toEqual({
      calibration: null,
      selection: { strategy: DEFAULT_SELECTION, attention: DEFAULT_ATTENTION, from: 'default' },
    });
    const engine = await Engine.create(await loadHfModel(CBQA_DIR), { threads: 1 });
    const store = openObjectStore(env.config.kvStoreUrl, { s3: env.config.s3 });
    try {
      const c = await calibrate(engine, {
        sample: CALIBRATION_SAMPLE.slice(0, 2),
        sampleName: 'built-in',
        blend: { mode: 'blend' },
        kvDtype: env.config.kvDtype,
      });
      await writeCalibration(store, c);
      expect((await models()).cacheblend).toMatchObject({
        calibration: {
          kvFingerprint: engine.kvFingerprint,
          flagged: c.flagged,
          blend: { selection: c.blend.selection },
          choice: { strategy: c.choice.strategy },
        },
        selection: { strategy: c.choice.strategy, attention: c.choice.attention, from: 'calibration' },
      });
    } finally {
      await store.close();
      await engine.dispose();
    }
  });
});

/** The `<!-- cli-example -->` of docs/walkthrough.md: its command's arguments and the documented output. */
async function walkthroughCli(): Promise<{ args: string[]; output: unknown }> {
  const doc = await readFile(new URL('../../docs/walkthrough.md', import.meta.url), 'utf8');
  const m = /<!-- cli-example: [\w-]+ -->\s*```sh\n([\s\S]*?)```\s*```json\n([\s\S]*?)```/.exec(doc);
  if (!m) throw new Error('docs/walkthrough.md has no cli-example');
  const words = parse(m[1].replace(/\\\n/g, ' ')).map(String);
  expect(words.slice(0, 3)).toEqual(['npx', 'cacheblend', 'generate']);
  return { args: words.slice(2), output: JSON.parse(m[2]) };
}

describe('docs/walkthrough.md, the CLI', () => {
  it('prints the documented reply for the documented command', async () => {
    const { args, output } = await walkthroughCli();
    let printed = '';
    expect(await main(args, (s) => (printed += s))).toBe(0);
    expect(replyDifferences(output, JSON.parse(printed))).toEqual([]);
  });
});
