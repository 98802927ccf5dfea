/**
 * Consistency under concurrent writers, on real Redis, a real file store and real workers:
 * - queries, DELETE and a re-POST of one document racing for 40 rounds: the document always ends ready
 *   with every chunk object stored (it used to stay `pending` forever about once in 30–40 rounds: a
 *   job finishing as "unreferenced" swallowed the re-POST's enqueue; a slow skip, injected, makes that
 *   race likely every round). The reconciler is off here, so the chunk generations alone must hold;
 * - concurrent POSTs of one id with different content for 25 rounds: the manifest in the store and the
 *   index in Redis always describe the same version (they disagreed in 4 of 25);
 * - DELETE purges the chunk from every blend worker's memory and disk tiers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkLifecycle } from '../../core/documents/chunk-lifecycle.js';
import { decodeManifest, manifestObjectKey } from '../../core/documents/manifest.js';
import { chunkObjectKey } from '../../core/kv/format.js';
import { openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { startBlendWorker, type BlendWorker } from '../../worker/blend-worker.js';
import { STORY_SETS } from '../helpers/models.js';
import { serviceConfig, waitFor } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Reply, type Stack } from '../helpers/stack.js';

let redis: RedisHandle;
let stack: Stack;
let store: ObjectStore;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({
    redis,
    label: 'consistency',
    env: { RECONCILE_INTERVAL_MS: '0', CHUNK_TOKEN_BUDGET: '128' },
  });
  store = openObjectStore(stack.config.kvStoreUrl);
});

afterAll(async () => {
  await store?.close();
  await stack?.close();
  await redis?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function chunkKeysOf(id: string): Promise<string[]> {
  const r = await stack.request('GET', `/v1/documents/${id}`);
  return (r.body.chunks as { key: string }[]).map((c) => c.key);
}

describe('queries, DELETE and re-POST racing', () => {
  it('never leave a document pending forever or ready without its objects (40 rounds)', async () => {
    // Ten chunks: ten precompute jobs per POST, any of which may be mid-way when the DELETE and re-POST land.
    const chunks = STORY_SETS.flatMap((s) => s.chunks).slice(0, 10);
    const post = () => stack.request('POST', '/v1/documents', { body: { id: 'race', chunks } });
    const query = () =>
      stack.request('POST', '/v1/query', { body: { question: 'Lily', documents: ['race'], maxTokens: 2 } });
    const fp = (await stack.api.modelReady).fingerprint;
    // Fault: the precompute worker is slow to end a job it skips as unreferenced (a GC pause, a slow
    // Redis), so a re-POST landing after a DELETE meets that job still running most rounds, not once in
    // 30-40: its chunks must get a new generation (a new job id), or the re-POST's job is swallowed.
    // Only precompute workers begin precomputes: the API and blend worker in this process are unaffected.
    const begin = ChunkLifecycle.prototype.beginPrecompute;
    ChunkLifecycle.prototype.beginPrecompute = async function (this: ChunkLifecycle, key: string) {
      const wanted = await begin.call(this, key);
      if (!wanted) await sleep(100);
      return wanted;
    };
    try {
      await raceRounds(post, query, fp);
    } finally {
      ChunkLifecycle.prototype.beginPrecompute = begin;
    }
  });
});

/** 40 rounds of POST, then a query, DELETE, re-POST and query racing; each ends ready with its objects. */
async function raceRounds(post: () => Promise<Reply>, query: () => Promise<Reply>, fp: string) {
  for (let round = 0; round < 40; round++) {
    // A POST (its chunks' jobs just enqueued), then a DELETE and a re-POST landing while those jobs run.
    expect((await post()).status).toBe(202);
    const replies = await Promise.all([
      query(),
      stack.request('DELETE', '/v1/documents/race'),
      sleep(Math.random() * 8).then(post),
      sleep(Math.random() * 8).then(query),
    ]);
    for (const r of replies) expect([200, 202, 404, 503]).toContain(r.status);
    let status = await stack.request('GET', '/v1/documents/race');
    if (status.status === 404) {
      expect((await post()).status).toBe(202); // DELETE landed last: put it back for the next round
    }
    status = await stack.ready('race', { timeoutMs: 15_000 }).catch((err: Error) => {
      throw new Error(`round ${round}: ${err.message}`);
    });
    for (const key of (status.body.chunks as { key: string }[]).map((c) => c.key)) {
      expect(await store.head(chunkObjectKey(fp, key)), `round ${round}: object of ${key}`).not.toBeNull();
    }
    // Next round starts from nothing: every chunk must be computed again.
    expect((await stack.request('DELETE', '/v1/documents/race')).status).toBe(200);
  }
}

describe('concurrent POSTs of one id with different content', () => {
  it('leave the manifest and the index agreeing (25 rounds)', async () => {
    const versions = [1, 2, 3].map((i) => STORY_SETS[i].chunks.join('\n\n'));
    for (let round = 0; round < 25; round++) {
      const replies = await Promise.all(
        versions.map((chunks, i) =>
          sleep(Math.floor(Math.random() * 5)).then(() =>
            stack.request('POST', '/v1/documents', {
              body: { id: 'split', text: chunks, metadata: { v: i } },
            }),
          ),
        ),
      );
      for (const r of replies) expect(r.status).toBe(202);
      const manifest = decodeManifest((await store.get(manifestObjectKey('split')))!);
      const indexed = await chunkKeysOf('split');
      expect(indexed, `round ${round}`).toEqual(manifest.chunks.map((c) => c.key));
      const meta = (await stack.request('GET', '/v1/documents/split')).body.metadata;
      expect(meta, `round ${round}`).toEqual(manifest.metadata);
    }
  });
});

describe('DELETE', () => {
  it('purges the chunks from every blend worker’s memory and disk tiers', async () => {
    // A second blend worker with its own inference thread, LRU and disk directory.
    const other = await serviceConfig({
      redis,
      label: 'consistency',
      env: {
        QUEUE_PREFIX: stack.config.queuePrefix,
        KV_STORE_URL: stack.config.kvStoreUrl,
        DATA_DIR: `${stack.env.dataDir}/second`,
      },
    });
    let second: BlendWorker | undefined;
    try {
      second = await startBlendWorker({ config: other.config, threadInit: { threads: 1 } });
      const workers = [stack.blend!, second];
      const text = STORY_SETS[4].chunks.join('\n\n');
      expect((await stack.request('POST', '/v1/documents', { body: { id: 'purge', text } })).status).toBe(
        202,
      );
      await stack.ready('purge');
      const keys = await chunkKeysOf('purge');
      const held = async (w: BlendWorker) => {
        const { lru, disk } = await w.thread.call('cachedChunks', [keys]);
        return lru.length + disk.length;
      };
      // Query until both workers hold the chunks (each query goes to whichever worker is free).
      await waitFor(
        async () => {
          await Promise.all(
            Array.from({ length: 4 }, () =>
              stack.request('POST', '/v1/query', {
                body: { question: 'Once upon a time', documents: ['purge'], maxTokens: 1 },
              }),
            ),
          );
          return (await held(workers[0])) > 0 && (await held(workers[1])) > 0;
        },
        30_000,
        'both workers holding the chunks',
      );
      expect((await stack.request('DELETE', '/v1/documents/purge')).status).toBe(200);
      await waitFor(async () => (await held(workers[0])) + (await held(workers[1])) === 0, 10_000, 'purged');
    } finally {
      await second?.close();
      await other.cleanup();
    }
  });
});
