import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { testEngineInit, s3Options, uniqueName } from '../helpers/service.js';
import { main } from '../../cli/main.js';
import { chunkKey, chunkObjectKey, decodeKvHeader, layerByteRange } from '../../core/kv/format.js';
import type { Engine } from '../../core/model/engine.js';
import { emptyCacheStats } from '../../core/cache/types.js';
import type { BlendJobData } from '../../core/queue/contracts.js';
import { TieredChunkLoader } from '../../core/cache/tiered-loader.js';
import { createHandlers, type EngineHandlers } from '../../core/inference/engine-handlers.js';
import { computeChunkObject } from '../../core/inference/chunk-objects.js';
import { FileObjectStore, openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { STORIES_DIR, storiesEngine, STORY_SETS, plannedPrompt } from '../helpers/models.js';
import { startS3, type S3Handle } from '../helpers/services.js';

/** An ObjectStore that counts the calls made to it. */
function counting(inner: ObjectStore) {
  const calls = { get: 0, getRange: 0, put: 0, head: 0 };
  const store: ObjectStore = {
    get: (k) => (calls.get++, inner.get(k)),
    getRange: (k, s, e) => (calls.getRange++, inner.getRange(k, s, e)),
    head: (k) => (calls.head++, inner.head(k)),
    put: (k, d) => (calls.put++, inner.put(k, d)),
    delete: (k) => inner.delete(k),
    list: (p) => inner.list(p),
    ping: () => inner.ping(),
    describe: () => inner.describe(),
    close: () => inner.close(),
  };
  return { store, calls };
}

let s3: S3Handle;
let engine: Engine;
const tmpDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-loader-'));
  tmpDirs.push(dir);
  return dir;
}

beforeAll(async () => {
  [s3, engine] = await Promise.all([startS3(), storiesEngine()]);
});

afterAll(async () => {
  await engine?.dispose();
  await s3?.stop();
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

const SET = STORY_SETS[0];
const MAX_TOKENS = 16;

/** The CLI's answer for the set's chunks and question (same defaults as the service: float16, greedy). */
async function cliAnswer(mode: string): Promise<string> {
  let out = '';
  const args = ['generate', '--model', STORIES_DIR, ...SET.chunks.flatMap((c) => ['--chunk', c])];
  const code = await main(
    [...args, '--question', SET.question, '--mode', mode, '--max-tokens', String(MAX_TOKENS), '--json'],
    (s) => (out += s),
  );
  expect(code).toBe(0);
  return (JSON.parse(out) as { text: string }).text;
}

const backends = [
  { name: 'file store', url: async () => `file://${await tempDir()}` },
  { name: 'S3 (s3rver)', url: async () => `s3://${s3.bucket}/${uniqueName('loader')}` },
];

for (const backend of backends) {
  describe(`tiered chunk loader over a ${backend.name}`, () => {
    let url: string;
    let store: ObjectStore;
    beforeAll(async () => {
      url = await backend.url();
      store = openObjectStore(url, { s3: s3Options(s3) });
    });
    afterAll(async () => store?.close());

    const fp = () => engine.model.fingerprint;
    const loaderFor = (st: ObjectStore, disk: ObjectStore | null, lruBytes: number) =>
      new TieredChunkLoader({
        store: st,
        disk,
        lruBytes,
        fingerprint: fp(),
        numLayers: engine.config.numLayers,
        kvHeads: engine.config.numKvHeads,
        headDim: engine.config.headDim,
        kvDtype: 'float16',
        compute: (ids) => computeChunkObject(engine, ids, 'float16'),
      });

    it('round-trips caches byte-exactly through store, disk and LRU, reading layer by layer', async () => {
      const ids = engine.model.tokenizer.encode(SET.chunks[0]);
      const key = chunkKey(fp(), ids);
      const objKey = chunkObjectKey(fp(), key);
      const object = await computeChunkObject(engine, ids, 'float16');
      await store.put(objKey, object);
      const L = engine.config.numLayers;

      const remote = counting(store);
      const disk = counting(new FileObjectStore(await tempDir()));
      const loader = loaderFor(remote.store, disk.store, 1 << 20);
      let stats = emptyCacheStats();
      expect((await loader.loadObject(key, ids, stats)).equals(object)).toBe(true);
      expect(stats.hits).toEqual({ gpu: 0, lru: 0, disk: 0, store: 1 });
      expect(stats.misses).toBe(0);
      expect(stats.bytesLoaded.store).toBe(object.length);
      // A header probe, then one byte range per layer; never a whole-object GET.
      expect(remote.calls).toMatchObject({ get: 0, getRange: 1 + L, put: 0 });
      expect((await disk.store.get(objKey))!.equals(object)).toBe(true);

      // Second time: the LRU, without touching disk or store.
      stats = emptyCacheStats();
      const before = { ...remote.calls };
      expect((await loader.loadObject(key, ids, stats)).equals(object)).toBe(true);
      expect(stats.hits).toEqual({ gpu: 0, lru: 1, disk: 0, store: 0 });
      expect(remote.calls).toEqual(before);

      // A new process (empty LRU) with the same disk cache: a disk hit.
      stats = emptyCacheStats();
      const fresh = counting(store);
      expect(
        (await loaderFor(fresh.store, disk.store, 1 << 20).loadObject(key, ids, stats)).equals(object),
      ).toBe(true);
      expect(stats.hits).toEqual({ gpu: 0, lru: 0, disk: 1, store: 0 });
      expect(fresh.calls.getRange + fresh.calls.get).toBe(0);

      // A corrupt disk copy is replaced from the store (and the disk copy rewritten).
      const diskFile = (await disk.store.get(objKey))!;
      const h = decodeKvHeader(diskFile);
      const [ls] = layerByteRange(h, L - 1);
      diskFile[ls + 3] ^= 0x10;
      await disk.store.put(objKey, diskFile);
      stats = emptyCacheStats();
      expect((await loaderFor(store, disk.store, 1 << 20).loadObject(key, ids, stats)).equals(object)).toBe(
        true,
      );
      expect(stats).toMatchObject({ hits: { lru: 0, disk: 0, store: 1 }, misses: 0, corrupt: 1 });
      expect((await disk.store.get(objKey))!.equals(object)).toBe(true);

      // No LRU, no disk: every load is a store hit.
      const storeOnly = loaderFor(store, null, 0);
      stats = emptyCacheStats();
      await storeOnly.loadObject(key, ids, stats);
      await storeOnly.loadObject(key, ids, stats);
      expect(stats.hits).toEqual({ gpu: 0, lru: 0, disk: 0, store: 2 });
    });

    it('computes and stores a chunk that is missing everywhere', async () => {
      const ids = engine.model.tokenizer.encode(SET.chunks[1]);
      const key = chunkKey(fp(), ids);
      const stats = emptyCacheStats();
      const buf = await loaderFor(store, null, 0).loadObject(key, ids, stats);
      expect(stats.misses).toBe(1);
      expect(stats.hits).toEqual({ gpu: 0, lru: 0, disk: 0, store: 0 });
      const expected = await computeChunkObject(engine, ids, 'float16');
      expect(buf.equals(expected)).toBe(true);
      expect((await store.get(chunkObjectKey(fp(), key)))!.equals(expected)).toBe(true);
    });

    describe('bad objects at query time', () => {
      let handlers: EngineHandlers;
      let expected: string;
      let objects: { key: string; objKey: string; object: Buffer }[];
      beforeAll(async () => {
        handlers = await createHandlers(
          testEngineInit({ kvStoreUrl: url, s3: s3Options(s3), logLevel: 'warn' }),
        );
        expected = await cliAnswer('blend');
        expect(expected.length).toBeGreaterThan(0);
        objects = await Promise.all(
          SET.chunks.map(async (c) => {
            const ids = engine.model.tokenizer.encode(c);
            const key = chunkKey(fp(), ids);
            return {
              key,
              objKey: chunkObjectKey(fp(), key),
              object: await computeChunkObject(engine, ids, 'float16'),
            };
          }),
        );
      });
      afterAll(async () => handlers?.close());

      const job = (): BlendJobData => ({
        question: SET.question,
        prompt: plannedPrompt(engine.model.tokenizer, fp(), {
          question: SET.question,
          chunks: SET.chunks.map((c, i) => ({
            key: objects[i].key,
            tokenIds: engine.model.tokenizer.encode(c),
          })),
        }),
        documents: ['d'],
        fingerprint: fp(),
        mode: 'blend',
        maxTokens: MAX_TOKENS,
        temperature: 0,
        seed: 0,
        stream: false,
      });

      const putAll = () => Promise.all(objects.map((o) => store.put(o.objKey, o.object)));

      it('answers like the CLI from stored caches', async () => {
        await putAll();
        const r = await handlers.blend(job());
        expect(r.answer).toBe(expected);
        expect(r.cache.hits.store).toBe(3);
        expect(r.cache.misses).toBe(0);
      });

      const damages: [string, (o: Buffer) => Buffer][] = [
        [
          'a flipped byte in a layer',
          (o) => {
            const h = decodeKvHeader(o);
            const [s, e] = layerByteRange(h, h.numLayers - 1);
            const bad = Buffer.from(o);
            bad[Math.floor((s + e) / 2)] ^= 0x40;
            return bad;
          },
        ],
        [
          'a flipped byte in the header',
          (o) => {
            const bad = Buffer.from(o);
            bad[40] ^= 0x01; // inside the fingerprint
            return bad;
          },
        ],
        [
          'an object truncated mid-layer',
          (o) => {
            const h = decodeKvHeader(o);
            const [s, e] = layerByteRange(h, h.numLayers - 1);
            return o.subarray(0, s + Math.floor((e - s) / 3));
          },
        ],
        ['an object truncated inside its header', (o) => o.subarray(0, 50)],
      ];

      for (const [what, damage] of damages) {
        it(`treats ${what} as a logged miss, recomputes, rewrites it and answers correctly`, async () => {
          await putAll();
          await store.put(objects[1].objKey, damage(objects[1].object));
          const lines: string[] = [];
          const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
            lines.push(String(chunk));
            return true;
          });
          let r;
          try {
            r = await handlers.blend(job());
          } finally {
            spy.mockRestore();
          }
          expect(r.answer).toBe(expected);
          expect(r.cache.misses).toBe(1);
          expect(r.cache.corrupt).toBe(1);
          expect(r.cache.hits.store).toBe(2);
          expect(
            lines.some((l) => l.includes('corrupt chunk cache in store') && l.includes(objects[1].key)),
          ).toBe(true);
          // Rewritten (in the background): the store holds the correct object again.
          await handlers.flush();
          expect((await store.get(objects[1].objKey))!.equals(objects[1].object)).toBe(true);
        });
      }

      it('computes and stores a chunk missing at query time', async () => {
        await putAll();
        await store.delete(objects[2].objKey);
        const r = await handlers.blend(job());
        expect(r.answer).toBe(expected);
        expect(r.cache.misses).toBe(1);
        expect(r.cache.corrupt).toBe(0);
        await handlers.flush();
        expect((await store.get(objects[2].objKey))!.equals(objects[2].object)).toBe(true);
      });
    });
  });
}
