import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { DiskTier } from '../../core/cache/disk-tier.js';
import { TieredChunkLoader } from '../../core/cache/tiered-loader.js';
import { emptyCacheStats } from '../../core/cache/types.js';
import { createHandlers, type EngineHandlers } from '../../core/inference/engine-handlers.js';
import { computeChunkObject } from '../../core/inference/chunk-objects.js';
import {
  chunkKey,
  chunkObjectKey,
  decodeKvHeader,
  layerByteRange,
  widenStoredLayer,
  type KvDtype,
} from '../../core/kv/format.js';
import type { Engine } from '../../core/model/engine.js';
import type { BlendJobData } from '../../core/queue/contracts.js';
import { FileObjectStore } from '../../core/storage/index.js';
import { plannedPrompt, STORIES_DIR, storiesEngine, STORY_SETS } from '../helpers/models.js';
import { testEngineInit } from '../helpers/service.js';

/**
 * int8 chunk caches (KV_DTYPE=int8) through the blend worker's loader over a file store: answers equal the
 * CLI's with the same dtype, a damaged int8 object is a miss (recomputed and rewritten, never a wrong
 * answer), and objects of another dtype are served only when at least as precise as KV_DTYPE.
 */

const SET = STORY_SETS[0];
const MAX_TOKENS = 16;
let engine: Engine;
let dir: string;
let store: FileObjectStore;
const handlers: Partial<Record<KvDtype, EngineHandlers>> = {};
const expected: Partial<Record<KvDtype, string>> = {};
const objects: Record<string, { key: string; objKey: string; object: Buffer }[]> = {};

async function cliAnswer(kvDtype: KvDtype): Promise<string> {
  let out = '';
  const args = ['generate', '--model', STORIES_DIR, ...SET.chunks.flatMap((c) => ['--chunk', c])];
  const code = await main(
    [
      ...args,
      '--question',
      SET.question,
      '--kv-dtype',
      kvDtype,
      '--max-tokens',
      String(MAX_TOKENS),
      '--json',
    ],
    (s) => (out += s),
  );
  expect(code).toBe(0);
  return (JSON.parse(out) as { text: string }).text;
}

beforeAll(async () => {
  engine = await storiesEngine();
  dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-int8-'));
  store = new FileObjectStore(dir);
  for (const kvDtype of ['int8', 'float16'] as const) {
    handlers[kvDtype] = await createHandlers(
      testEngineInit({ kvStoreUrl: `file://${dir}`, kvDtype, logLevel: 'silent' }),
    );
    expected[kvDtype] = await cliAnswer(kvDtype);
    objects[kvDtype] = await Promise.all(
      SET.chunks.map(async (c) => {
        const ids = engine.model.tokenizer.encode(c);
        const key = chunkKey(engine.model.fingerprint, ids);
        const objKey = chunkObjectKey(engine.model.fingerprint, key);
        return { key, objKey, object: await computeChunkObject(engine, ids, kvDtype) };
      }),
    );
  }
});

afterAll(async () => {
  await Promise.all(Object.values(handlers).map((h) => h.close()));
  await engine?.dispose();
  await rm(dir, { recursive: true, force: true });
});

const job = (): BlendJobData => ({
  question: SET.question,
  prompt: plannedPrompt(engine.model.tokenizer, engine.model.fingerprint, {
    question: SET.question,
    chunks: SET.chunks.map((c, i) => ({
      key: objects.int8[i].key,
      tokenIds: engine.model.tokenizer.encode(c),
    })),
  }),
  documents: ['d'],
  fingerprint: engine.model.fingerprint,
  mode: 'blend',
  maxTokens: MAX_TOKENS,
  temperature: 0,
  seed: 0,
  stream: false,
});

const putAll = (kvDtype: KvDtype) => Promise.all(objects[kvDtype].map((o) => store.put(o.objKey, o.object)));

describe('int8 chunk caches in the blend worker', () => {
  it('answers from stored int8 objects like the CLI with --kv-dtype int8', async () => {
    expect(decodeKvHeader(objects.int8[0].object)).toMatchObject({ version: 2, dtype: 'int8' });
    await putAll('int8');
    const r = await handlers.int8!.blend(job());
    expect(r.answer).toBe(expected.int8);
    expect(r.cache).toMatchObject({ hits: { store: 3 }, misses: 0, corrupt: 0 });
  });

  it('round-trips int8 objects byte-exactly through the store, the disk tier and the LRU', async () => {
    await putAll('int8');
    const { key, object } = objects.int8[0];
    const ids = engine.model.tokenizer.encode(SET.chunks[0]);
    const disk = new DiskTier(path.join(dir, 'disk'), 1 << 24);
    const loaderWith = (lruBytes: number) =>
      new TieredChunkLoader({
        store,
        disk,
        lruBytes,
        fingerprint: engine.model.fingerprint,
        numLayers: engine.config.numLayers,
        kvHeads: engine.config.numKvHeads,
        headDim: engine.config.headDim,
        kvDtype: 'int8',
        compute: () => Promise.reject(new Error('every chunk is stored')),
      });
    const loader = loaderWith(1 << 24);
    for (const tier of ['store', 'lru'] as const) {
      const stats = emptyCacheStats();
      expect((await loader.loadObject(key, ids, stats)).equals(object)).toBe(true);
      expect(stats.hits[tier]).toBe(1);
    }
    const stats = emptyCacheStats();
    const fromDisk = await loaderWith(0).open(key, ids, stats);
    expect(stats.hits.disk).toBe(1);
    const layer = await fromDisk.storedLayer(1);
    expect(layer.dtype).toBe('int8');
    expect(widenStoredLayer(layer).k).toEqual((await fromDisk.layer(1)).k);
  });

  const damages: [string, (o: Buffer) => Buffer][] = [
    ['a flipped value byte', (o) => flip(o, layerByteRange(decodeKvHeader(o), 1)[0] + 11)],
    [
      'a flipped scale byte',
      (o) => {
        const h = decodeKvHeader(o);
        // The last byte of the layer: the high byte of V's last scale.
        return flip(o, layerByteRange(h, h.numLayers - 1)[1] - 1);
      },
    ],
    ['a truncated object', (o) => o.subarray(0, layerByteRange(decodeKvHeader(o), 2)[0] + 5)],
  ];
  const flip = (o: Buffer, at: number) => {
    const bad = Buffer.from(o);
    bad[at] ^= 0x08;
    return bad;
  };

  for (const [what, damage] of damages) {
    it(`treats ${what} as a miss: recomputed, rewritten, the same answer`, async () => {
      await putAll('int8');
      await store.put(objects.int8[1].objKey, damage(objects.int8[1].object));
      const r = await handlers.int8!.blend(job());
      expect(r.answer).toBe(expected.int8);
      expect(r.cache).toMatchObject({ hits: { store: 2 }, misses: 1, corrupt: 1 });
      await handlers.int8!.flush();
      expect((await store.get(objects.int8[1].objKey))!.equals(objects.int8[1].object)).toBe(true);
    });
  }

  it('serves fp16 objects to an int8 reader (more precise), as fp16 caches answer', async () => {
    await putAll('float16');
    const r = await handlers.int8!.blend(job());
    expect(r.answer).toBe(expected.float16);
    expect(r.cache).toMatchObject({ hits: { store: 3 }, misses: 0, corrupt: 0 });
  });

  it('never serves int8 objects to an fp16 reader: they are recomputed and rewritten in fp16', async () => {
    await putAll('int8');
    const r = await handlers.float16!.blend(job());
    expect(r.answer).toBe(expected.float16);
    expect(r.cache).toMatchObject({ hits: { store: 0 }, misses: 3 });
    await handlers.float16!.flush();
    for (const o of objects.float16) expect((await store.get(o.objKey))!.equals(o.object)).toBe(true);
  });
});
