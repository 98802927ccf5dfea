/**
 * The service started again on the same data with another model (`npm start -- --model cbqa-3M` after the
 * stories260K demo): documents ingested under the first model are never served with its token ids. The
 * API refuses them (409 KV_MISMATCH, naming the document and what happens) until they are re-tokenized,
 * which it does itself when it starts: the same id, metadata and chunk texts, tokenized by the new model
 * and precomputed again, after which queries use the new model's token counts. Real Redis, a file store
 * shared by both services, stories260K and cbqa-3M.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelIdentity, startApi } from '../../api/server.js';
import { loadConfig } from '../../core/config/index.js';
import { CBQA_DIR, STORIES_DIR } from '../helpers/models.js';
import { uniqueName } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

const TEXT =
  'Once upon a time, there was a little girl named Lily. She had a red ball and she loved to play with it in the park.';
let redis: RedisHandle;
let dir: string;
let shared: Record<string, string>;

beforeAll(async () => {
  redis = await startRedis();
  dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-model-switch-'));
  shared = {
    QUEUE_PREFIX: uniqueName('model-switch'),
    KV_STORE_URL: `file://${dir}`,
    CHUNK_TOKEN_BUDGET: '256',
  };
});

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

const fullQuery = (stack: Stack) =>
  stack.request('POST', '/v1/query', {
    body: { question: 'Who had a red ball?', documents: ['lily'], mode: 'full', maxTokens: 1 },
  });

describe('another model on the same data', () => {
  it('refuses the old token ids, re-tokenizes on start, then answers with the new model’s tokens', async () => {
    const first = await startStack({ redis, label: 'switch-a', env: { ...shared, MODEL: STORIES_DIR } });
    let oldContext: number;
    try {
      const post = await first.request('POST', '/v1/documents', {
        body: { id: 'lily', text: TEXT, metadata: { source: 'story' } },
      });
      expect(post.status).toBe(202);
      await first.ready('lily');
      oldContext = ((await fullQuery(first)).body as { contextTokens: number }).contextTokens;
    } finally {
      await first.close();
    }

    const cbqaEnv = { ...shared, MODEL: CBQA_DIR };
    const cbqa = await loadModelIdentity(loadConfig(cbqaEnv));
    const newTokens = (await cbqa.chunkDocument({ text: TEXT }, 256)).reduce(
      (a, c) => a + c.tokenIds.length,
      0,
    );
    expect(newTokens).not.toBe(oldContext);

    // An API of the new model that has not re-tokenized (yet): the old documents are refused, never mixed.
    const held = await startApi({
      config: loadConfig({ ...cbqaEnv, REDIS_URL: redis.url }),
      port: 0,
      retokenize: false,
    });
    try {
      await held.modelReady;
      const r = await fetch(`${held.url}/v1/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ question: 'Who had a red ball?', documents: ['lily'], maxTokens: 1 }),
      });
      expect(r.status).toBe(409);
      const body = (await r.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('KV_MISMATCH');
      expect(body.error.message).toContain('"lily" was ingested under another model');
    } finally {
      await held.close();
    }

    const second = await startStack({ redis, label: 'switch-b', env: cbqaEnv });
    try {
      await second.api.retokenized;
      const doc = await second.ready('lily', { timeoutMs: 60_000 });
      expect(doc.body.metadata).toEqual({ source: 'story' });
      const r = await fullQuery(second);
      expect(r.status).toBe(200);
      expect((r.body as { contextTokens: number }).contextTokens).toBe(newTokens);
      const blend = await second.request('POST', '/v1/query', {
        body: { question: 'Who had a red ball?', documents: ['lily'], maxTokens: 1 },
      });
      expect(blend.status).toBe(200);
      expect((blend.body as { contextTokens: number }).contextTokens).toBe(newTokens);
    } finally {
      await second.close();
    }
  }, 180_000);
});
