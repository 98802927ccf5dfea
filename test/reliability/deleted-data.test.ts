/**
 * Deleted data stays deleted: a query that was planned before a DELETE (or races it) and has to compute
 * the document's chunks must not write them back to the store once the DELETE has collected them. On a
 * real Redis, a real file store and the real workers.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DocumentKeys } from '../../core/documents/keys.js';
import { chunkObjectKey } from '../../core/kv/format.js';
import type { BlendChunkRef, BlendJobData } from '../../core/queue/contracts.js';
import { openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { STORY_SETS } from '../helpers/models.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

let redis: RedisHandle;
let stack: Stack;
let store: ObjectStore;
let client: Redis;
let fp: string;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({
    redis,
    label: 'deleted-data',
    env: { RECONCILE_INTERVAL_MS: '0', CHUNK_TOKEN_BUDGET: '128' },
  });
  store = openObjectStore(stack.config.kvStoreUrl);
  client = new Redis(redis.url);
  fp = (await stack.api.modelReady).fingerprint;
});

afterAll(async () => {
  client?.disconnect();
  await store?.close();
  await stack?.close();
  await redis?.stop();
});

const CHUNKS = STORY_SETS[2].chunks.slice(0, 3);

/** Post a 3-chunk document, wait until ready, and return its chunk references (keys and token ids). */
async function readyDocument(id: string): Promise<BlendChunkRef[]> {
  expect((await stack.request('POST', '/v1/documents', { body: { id, chunks: CHUNKS } })).status).toBe(202);
  const status = await stack.ready(id);
  const keys = new DocumentKeys(stack.config.queuePrefix);
  return Promise.all(
    (status.body.chunks as { key: string }[]).map(async ({ key }) => ({
      key,
      tokenIds: JSON.parse((await client.hget(keys.chunk(key), 'tokens'))!) as number[],
    })),
  );
}

async function storedObjects(refs: BlendChunkRef[]): Promise<number> {
  let n = 0;
  for (const r of refs) if (await store.head(chunkObjectKey(fp, r.key))) n++;
  return n;
}

describe('DELETE racing queries', () => {
  it('a query planned before the DELETE computes the chunks but does not store them again', async () => {
    const refs = await readyDocument('planned');
    expect(await storedObjects(refs)).toBe(3);
    const del = await stack.request('DELETE', '/v1/documents/planned');
    expect(del.body).toEqual({ id: 'planned', deleted: true, chunksDeleted: 3 });
    expect(await storedObjects(refs)).toBe(0);
    await stack.thread.call('clearLru', []);
    await stack.thread.call('evictChunks', [refs.map((r) => r.key)]);
    const job: BlendJobData = {
      question: 'What happened next',
      prompt: {
        ...(await (
          await stack.api.modelReady
        ).planFrame({ template: 'auto', question: 'What happened next' }, '', 'question')),
        chunks: refs,
        promptField: 'documents',
      },
      documents: ['planned'],
      fingerprint: fp,
      mode: 'blend',
      maxTokens: 8,
      temperature: 0,
      seed: 0,
      stream: false,
    };
    const r = await stack.thread.call('blend', [job]);
    expect(r.cache.misses).toBe(3); // computed: the objects were gone
    await stack.thread.call('flush', []);
    expect(await storedObjects(refs)).toBe(0);
  });

  it('six queries and a DELETE within 150 ms leave no object behind (3 rounds)', async () => {
    for (let round = 0; round < 3; round++) {
      const id = `race-${round}`;
      const refs = await readyDocument(id);
      await stack.thread.call('clearLru', []);
      await stack.thread.call('evictChunks', [refs.map((r) => r.key)]);
      const query = () =>
        stack.request('POST', '/v1/query', {
          body: { question: 'What happened next', documents: [id], maxTokens: 48 },
        });
      const replies = await Promise.all([
        ...Array.from({ length: 6 }, query),
        new Promise((res) => setTimeout(res, Math.random() * 150)).then(() =>
          stack.request('DELETE', `/v1/documents/${id}`),
        ),
      ]);
      for (const reply of replies) expect([200, 404]).toContain(reply.status);
      expect(replies[6].status).toBe(200);
      await stack.thread.call('flush', []);
      expect(await storedObjects(refs), `round ${round}`).toBe(0);
    }
  });

  it('a query that recomputes a lost chunk of a live document stores it again', async () => {
    const refs = await readyDocument('live');
    await store.delete(chunkObjectKey(fp, refs[1].key)); // lost from the store (not deleted by the service)
    await stack.thread.call('clearLru', []);
    await stack.thread.call('evictChunks', [refs.map((r) => r.key)]);
    const r = await stack.request('POST', '/v1/query', {
      body: { question: 'What happened next', documents: ['live'], maxTokens: 4 },
    });
    expect(r.status, r.text).toBe(200);
    expect((r.body.cache as { misses: number }).misses).toBe(1);
    await stack.thread.call('flush', []);
    expect(await storedObjects(refs)).toBe(3);
  });

  it('raw-chunk queries leave nothing in the store (only the bounded LRU and disk tiers hold them)', async () => {
    const count = async () => {
      let n = 0;
      for await (const _ of store.list('kv/')) n++;
      return n;
    };
    const before = await count();
    const texts = STORY_SETS[3].chunks.map((c, i) => `${c} (variant ${i} ${Date.now()})`);
    const r = await stack.request('POST', '/v1/query', {
      body: { question: 'What happened next', chunks: texts, maxTokens: 4 },
    });
    expect(r.status, r.text).toBe(200);
    expect((r.body.cache as { misses: number }).misses).toBe(texts.length);
    await stack.thread.call('flush', []);
    expect(await count()).toBe(before);
    const cached = await stack.thread.call('diskChunkKeys', []);
    expect(cached.length).toBeGreaterThanOrEqual(texts.length);
  });
});
