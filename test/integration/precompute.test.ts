import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelIdentity } from '../../api/server.js';
import { chunkKey, chunkObjectKey, decodeKvHeader } from '../../core/kv/format.js';
import type { Engine } from '../../core/model/engine.js';
import { PRECOMPUTE_QUEUE } from '../../core/queue/contracts.js';
import {
  closeRedis,
  createRedis,
  keyPrefix,
  waitForRedis,
  type RedisClient,
} from '../../core/queue/redis.js';
import { DocumentService, type ModelIdentity } from '../../core/documents/documents.js';
import { manifestObjectKey } from '../../core/documents/manifest.js';
import { metrics } from '../../core/ops/metrics.js';
import { computeChunkObject } from '../../core/inference/chunk-objects.js';
import { openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { precomputeBatch } from '../../precompute/batch.js';
import { startPrecomputeWorker, type PrecomputeWorker } from '../../precompute/precompute-worker.js';
import { storiesEngine, STORY_SETS } from '../helpers/models.js';
import { s3Options, serviceConfig, waitFor, type TestServiceEnv } from '../helpers/service.js';
import { startRedis, startS3, type RedisHandle, type S3Handle } from '../helpers/services.js';

let redisServer: RedisHandle;
let s3: S3Handle;
let env: TestServiceEnv;
let worker: PrecomputeWorker;
let redis: RedisClient;
let queue: Queue;
let store: ObjectStore;
let docs: DocumentService;
let model: ModelIdentity;
let engine: Engine;

beforeAll(async () => {
  [redisServer, s3, engine] = await Promise.all([startRedis(), startS3(), storiesEngine()]);
  env = await serviceConfig({ redis: redisServer, s3, label: 'precompute' });
  const { config } = env;
  worker = await startPrecomputeWorker({ config, threadInit: { threads: 1 }, reconcileMs: 0 });
  redis = createRedis(config, 'producer');
  await waitForRedis(redis);
  queue = new Queue(PRECOMPUTE_QUEUE, { connection: redis, prefix: keyPrefix(config.queuePrefix) });
  store = openObjectStore(config.kvStoreUrl, { s3: s3Options(s3) });
  docs = new DocumentService(redis, store, queue, config.queuePrefix);
  model = await loadModelIdentity(config);
});

afterAll(async () => {
  await worker?.close();
  await queue?.close();
  if (redis) await closeRedis(redis);
  await store?.close();
  await engine?.dispose();
  await Promise.all([redisServer?.stop(), s3?.stop(), env?.cleanup()]);
});

const fp = () => model.fingerprint;
const keyOf = (text: string) => chunkKey(fp(), engine.model.tokenizer.encode(text));
const objKeyOf = (text: string) => chunkObjectKey(fp(), keyOf(text));
const expectedObject = (text: string) =>
  computeChunkObject(engine, engine.model.tokenizer.encode(text), 'float16');
const counter = async (name: string, labels: Record<string, string> = {}) => {
  const m = (await metrics().registry.getSingleMetric(name)?.get())?.values ?? [];
  return m
    .filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    .reduce((a, v) => a + v.value, 0);
};

async function ready(id: string) {
  return waitFor(
    async () => {
      const s = await docs.status(id);
      if (s?.status === 'failed') throw new Error(`document ${id} failed: ${JSON.stringify(s.chunks)}`);
      return s?.status === 'ready' ? s : null;
    },
    30_000,
    `document ${id} ready`,
  );
}

describe('precompute worker', () => {
  const set = STORY_SETS[1];

  it('stores every chunk once, byte-exactly, and never recomputes a stored chunk', async () => {
    const written0 = await counter('cacheblend_precompute_bytes_written_total');
    const a = await docs.ingest({ id: 'a', chunks: set.chunks }, model, { budget: 128 });
    expect(a.enqueued).toHaveLength(set.chunks.length);
    const status = await ready('a');
    expect(status.progress).toMatchObject({
      ready: set.chunks.length,
      total: set.chunks.length,
      fraction: 1,
    });
    let total = 0;
    for (const c of set.chunks) {
      const expected = await expectedObject(c);
      expect((await store.get(objKeyOf(c)))!.equals(expected)).toBe(true);
      total += expected.length;
    }
    expect((await counter('cacheblend_precompute_bytes_written_total')) - written0).toBe(total);
    expect(JSON.parse((await store.get(manifestObjectKey('a')))!.toString()).chunks).toHaveLength(
      set.chunks.length,
    );

    // Another document sharing a chunk: only the new chunk is enqueued.
    const b = await docs.ingest({ id: 'b', chunks: [set.chunks[0], 'A brand new chunk.'] }, model, {
      budget: 24,
    });
    expect(b.alreadyReady).toEqual([keyOf(set.chunks[0])]);
    expect(b.enqueued).toEqual([keyOf('A brand new chunk.')]);
    await ready('b');

    // A job for a chunk already stored (e.g. Redis lost its state) finds the object and writes nothing.
    const written1 = await counter('cacheblend_precompute_bytes_written_total');
    const existing0 = await counter('cacheblend_precompute_chunks_total', { result: 'existing' });
    const k = keyOf(set.chunks[1]);
    await redis.hset(docs.keys.chunk(k), 'state', 'pending');
    await docs.jobs.enqueue([
      { gen: 1, data: { key: k, fingerprint: fp(), tokenIds: engine.model.tokenizer.encode(set.chunks[1]) } },
    ]);
    await waitFor(async () => (await docs.chunkInfo([k])).get(k)?.state === 'ready', 20_000, 'chunk ready');
    expect((await docs.chunkInfo([k])).get(k)?.written).toBe(0);
    expect(await counter('cacheblend_precompute_bytes_written_total')).toBe(written1);
    expect(await counter('cacheblend_precompute_chunks_total', { result: 'existing' })).toBe(existing0 + 1);
  });

  it('rewrites a stored object that is invalid', async () => {
    const c = set.chunks[2];
    const k = keyOf(c);
    const expected = await expectedObject(c);
    await store.put(objKeyOf(c), expected.subarray(0, expected.length - 10));
    await redis.hset(docs.keys.chunk(k), 'state', 'pending', 'written', '0');
    await docs.jobs.enqueue([
      { gen: 1, data: { key: k, fingerprint: fp(), tokenIds: engine.model.tokenizer.encode(c) } },
    ]);
    const info = await waitFor(
      async () => {
        const i = (await docs.chunkInfo([k])).get(k);
        return i?.state === 'ready' ? i : null;
      },
      20_000,
      'chunk rewritten',
    );
    expect(info.written).toBe(expected.length);
    expect((await store.get(objKeyOf(c)))!.equals(expected)).toBe(true);
  });

  it('rewrites a stored int8 object in its own KV_DTYPE (float16): never keeps a coarser cache', async () => {
    const c = set.chunks[2];
    const k = keyOf(c);
    const ids = engine.model.tokenizer.encode(c);
    await store.put(objKeyOf(c), await computeChunkObject(engine, ids, 'int8'));
    await redis.hset(docs.keys.chunk(k), 'state', 'pending', 'written', '0');
    await docs.jobs.enqueue([{ gen: 1, data: { key: k, fingerprint: fp(), tokenIds: ids } }]);
    const expected = await expectedObject(c);
    const info = await waitFor(
      async () => {
        const i = (await docs.chunkInfo([k])).get(k);
        return i?.state === 'ready' ? i : null;
      },
      20_000,
      'chunk rewritten',
    );
    expect(info.written).toBe(expected.length);
    expect((await store.get(objKeyOf(c)))!.equals(expected)).toBe(true);
  });

  it('deletes the objects of chunks no document references any more', async () => {
    const shared = set.chunks[0];
    expect(await docs.remove('a')).toEqual({ chunksDeleted: set.chunks.length - 1 });
    expect(await store.head(manifestObjectKey('a'))).toBeNull();
    expect(await store.head(objKeyOf(shared))).not.toBeNull(); // still used by b
    for (const c of set.chunks.slice(1)) expect(await store.head(objKeyOf(c))).toBeNull();
    expect(await docs.status('a')).toBeNull();
    expect(await docs.remove('a')).toBeNull();

    expect(await docs.remove('b')).toEqual({ chunksDeleted: 2 });
    expect(await store.head(objKeyOf(shared))).toBeNull();
    expect(await redis.exists(docs.keys.chunk(keyOf(shared)), docs.keys.refs(keyOf(shared)))).toBe(0);
    expect(await redis.scard(docs.keys.gc)).toBe(0);
  });

  it('keeps a chunk that a concurrent ingest takes up while it is being deleted', async () => {
    const c = 'Max the cat slept in the warm sun all day.';
    await docs.ingest({ id: 'c', chunks: [c] }, model, { budget: 128 });
    await ready('c');
    // A store whose deletes wait for the test, so the ingest lands mid-deletion.
    let deleteCalled!: () => void;
    const deleting = new Promise<void>((r) => (deleteCalled = r));
    let releaseDelete!: () => void;
    const release = new Promise<void>((r) => (releaseDelete = r));
    const slowStore: ObjectStore = {
      ...store,
      get: (k) => store.get(k),
      getRange: (k, s, e) => store.getRange(k, s, e),
      head: (k) => store.head(k),
      put: (k, d) => store.put(k, d),
      list: (p) => store.list(p),
      ping: () => store.ping(),
      describe: () => store.describe(),
      close: async () => undefined,
      delete: async (k) => {
        if (k.startsWith('kv/')) {
          deleteCalled();
          await release;
        }
        return store.delete(k);
      },
    };
    const slowDocs = new DocumentService(redis, slowStore, queue, env.config.queuePrefix);
    const removal = slowDocs.remove('c');
    await deleting; // the chunk is marked 'deleting' and its object is about to go
    const d = await docs.ingest({ id: 'd', chunks: [c] }, model, { budget: 128 });
    expect(d.enqueued).toEqual([keyOf(c)]); // seen as not ready: a job is enqueued
    releaseDelete();
    expect(await removal).toEqual({ chunksDeleted: 1 });
    await ready('d'); // the job waited for the lock, then stored the chunk again
    expect((await store.get(objKeyOf(c)))!.equals(await expectedObject(c))).toBe(true);
    await docs.remove('d');
  });
});

describe('precompute worker with KV_DTYPE=int8', () => {
  let env8: TestServiceEnv;
  let worker8: PrecomputeWorker;
  let redis8: RedisClient;
  let queue8: Queue;
  let docs8: DocumentService;
  let store8: ObjectStore;
  beforeAll(async () => {
    env8 = await serviceConfig({
      redis: redisServer,
      s3,
      label: 'precompute-int8',
      env: { KV_DTYPE: 'int8' },
    });
    worker8 = await startPrecomputeWorker({
      config: env8.config,
      threadInit: { threads: 1 },
      reconcileMs: 0,
    });
    redis8 = createRedis(env8.config, 'producer');
    queue8 = new Queue(PRECOMPUTE_QUEUE, { connection: redis8, prefix: keyPrefix(env8.config.queuePrefix) });
    store8 = openObjectStore(env8.config.kvStoreUrl, { s3: s3Options(s3) });
    docs8 = new DocumentService(redis8, store8, queue8, env8.config.queuePrefix);
  });
  afterAll(async () => {
    await worker8?.close();
    await queue8?.close();
    if (redis8) await closeRedis(redis8);
    await store8?.close();
    await env8?.cleanup();
  });

  it('stores int8 objects, and keeps an fp16 object it finds (more precise) without recomputing', async () => {
    const [kept, fresh] = STORY_SETS[5].chunks;
    const ids = (t: string) => engine.model.tokenizer.encode(t);
    const fp16 = await computeChunkObject(engine, ids(kept), 'float16');
    await store8.put(objKeyOf(kept), fp16);
    await docs8.ingest({ id: 'i8', chunks: [kept, fresh] }, model, { budget: 128 });
    await waitFor(
      async () => ((await docs8.status('i8'))?.status === 'ready' ? true : null),
      30_000,
      'i8 ready',
    );
    expect((await store8.get(objKeyOf(kept)))!.equals(fp16)).toBe(true);
    expect((await docs8.chunkInfo([keyOf(kept)])).get(keyOf(kept))?.written).toBe(0);
    const stored = (await store8.get(objKeyOf(fresh)))!;
    expect(decodeKvHeader(stored)).toMatchObject({ version: 2, dtype: 'int8' });
    expect(stored.equals(await computeChunkObject(engine, ids(fresh), 'int8'))).toBe(true);
  });
});

describe('batch precompute', () => {
  it('ingests a folder of text files and does no new work when re-run', async () => {
    const dir = path.join(env.dataDir, 'corpus');
    await mkdir(path.join(dir, 'sub'), { recursive: true });
    await writeFile(
      path.join(dir, 'a.md'),
      `# Lily\n\n${STORY_SETS[0].chunks.join(' ')}\n\n${STORY_SETS[2].chunks[0]}`,
    );
    const b = STORY_SETS[3].chunks.join('\n\n');
    await writeFile(path.join(dir, 'b.txt'), b);
    await writeFile(path.join(dir, 'sub', 'c.md'), `${b}\n\n${STORY_SETS[4].chunks.join(' ')}`);
    await writeFile(path.join(dir, 'ignored.json'), '{"not": "a document"}');

    const lines: string[] = [];
    const run = async (args: string[]) => {
      let out = '';
      const r = await precomputeBatch([...args, '--json', dir], {
        config: env.config,
        out: (s) => (out += s),
        progress: { write: (s: string) => lines.push(s), isTTY: false },
        threadInit: { threads: 1 },
      });
      expect(r.code).toBe(0);
      return JSON.parse(out) as NonNullable<typeof r.summary>;
    };
    const first = await run([]);
    expect(first.documents).toBe(3);
    expect(first.documentsReady).toBe(3);
    expect(first.distinctChunks).toBeLessThan(first.chunks); // c.md starts like b.txt
    expect(first.computed).toBe(first.distinctChunks);
    expect(first.bytesWritten).toBeGreaterThan(0);
    expect(lines.some((l) => l.includes('100%'))).toBe(true);
    expect(await docs.status('sub--c.md')).toMatchObject({
      status: 'ready',
      metadata: { source: 'sub/c.md' },
    });

    const second = await run(['--remote']); // no worker needed: nothing to do
    expect(second).toMatchObject({
      documents: 3,
      documentsReady: 3,
      computed: 0,
      bytesWritten: 0,
      alreadyStored: first.distinctChunks,
    });
  });
});
