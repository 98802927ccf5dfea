/**
 * Redis faults, injected into a real redis-server:
 * - an outage (SIGKILL, restart from its append-only file): requests get a quick 503 meanwhile, and
 *   afterwards documents are all there and new work completes;
 * - a Redis without persistence: the service refuses to start, naming the fix; run anyway
 *   (REDIS_REQUIRE_DURABLE=false) and restarted, it has lost every document — and `cacheblend rebuild`
 *   restores them from the manifests in the store, without recomputing a chunk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi } from '../../api/server.js';
import { rebuildCommand } from '../../cli/rebuild.js';
import { STORY_SETS } from '../helpers/models.js';
import { serviceConfig, waitFor } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

const TEXT = STORY_SETS[1].chunks.join('\n\n');

describe('a Redis outage', () => {
  let redis: RedisHandle;
  let stack: Stack;

  beforeAll(async () => {
    redis = await startRedis();
    stack = await startStack({ redis, label: 'outage' });
  });

  afterAll(async () => {
    await stack?.close();
    await redis?.stop();
  });

  it('answers 503 quickly while Redis is down and loses nothing once it is back', async () => {
    expect(
      (await stack.request('POST', '/v1/documents', { body: { id: 'before', text: TEXT } })).status,
    ).toBe(202);
    await stack.ready('before');
    await new Promise((r) => setTimeout(r, 1_500)); // appendfsync everysec: let the last second reach disk

    await redis.kill();
    const t0 = Date.now();
    const replies = await Promise.all([
      stack.request('GET', '/v1/documents/before'),
      stack.request('POST', '/v1/documents', { body: { id: 'during', text: TEXT } }),
      stack.request('GET', '/readyz'),
    ]);
    for (const r of replies) expect(r.status).toBe(503);
    expect(replies[2].body.error?.checks?.redis).not.toBe('ok');
    expect(Date.now() - t0).toBeLessThan(10_000);

    await redis.restart();
    await stack.ready('before', { timeoutMs: 20_000 });
    const after = await stack.request('POST', '/v1/documents', {
      body: { id: 'after', text: STORY_SETS[2].chunks.join('\n\n') },
    });
    expect(after.status).toBe(202);
    await stack.ready('after', { timeoutMs: 30_000 });
    const q = await stack.request('POST', '/v1/query', {
      body: { question: 'Lily and the dog', documents: ['before', 'after'], maxTokens: 4 },
    });
    expect(q.status).toBe(200);
  });
});

describe('a Redis without persistence', () => {
  let redis: RedisHandle;

  beforeAll(async () => {
    redis = await startRedis({ durable: false });
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it('is refused at start, with the fix named', async () => {
    const env = await serviceConfig({ redis, label: 'volatile' });
    try {
      await expect(startApi({ config: env.config, port: 0 })).rejects.toThrow(
        /not durable: no persistence.*appendonly yes.*noeviction.*cacheblend rebuild/,
      );
    } finally {
      await env.cleanup();
    }
  });

  it('loses every document on restart; cacheblend rebuild restores them from the manifests', async () => {
    const stack = await startStack({ redis, label: 'rebuild', env: { REDIS_REQUIRE_DURABLE: 'false' } });
    try {
      for (const [i, id] of ['one', 'two'].entries()) {
        const text = STORY_SETS[i + 3].chunks.join('\n\n');
        expect((await stack.request('POST', '/v1/documents', { body: { id, text } })).status).toBe(202);
        await stack.ready(id);
      }
      await redis.restart(); // no AOF, no RDB: an empty Redis
      // Once the API has reconnected (503 until then), the document is gone.
      await waitFor(
        async () => (await stack.request('GET', '/v1/documents/one')).status === 404,
        15_000,
        'the empty Redis to answer 404',
      );

      let out = '';
      const summary = await rebuildCommand({ json: true }, (s) => (out += s), stack.config);
      expect(summary).toMatchObject({ manifests: 2, restored: 2, damaged: 0 });
      expect(JSON.parse(out)).toMatchObject({ restored: 2 });
      for (const id of ['one', 'two']) {
        const status = await stack.ready(id);
        const keys = (status.body.chunks as { key: string }[]).map((c) => c.key);
        const info = await stack.api.docs.chunkInfo(keys);
        // Stored caches were found and checked, not recomputed.
        for (const k of keys) expect(info.get(k)).toMatchObject({ state: 'ready', written: 0 });
      }
      const again = await rebuildCommand({ json: true }, () => undefined, stack.config);
      expect(again).toMatchObject({ restored: 0, unchanged: 2 });
    } finally {
      await stack.close();
    }
  });
});
