/**
 * What a document keeps of what it was given, on the real service:
 * - metadata holding a `__proto__` key (at any depth) is refused with a 400 naming the key, not stored
 *   with the key silently dropped;
 * - `cacheblend rebuild` keeps a document's createdAt (it used to take the updatedAt).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rebuildCommand } from '../../cli/rebuild.js';
import { STORY_SETS } from '../helpers/models.js';
import { waitFor } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

let redis: RedisHandle;
let stack: Stack;
let admin: Redis;
const TEXT = STORY_SETS[0].chunks.join('\n\n');

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({ redis, label: 'documents-input' });
  admin = new Redis(redis.url);
});

afterAll(async () => {
  admin?.disconnect();
  await stack?.close();
  await redis?.stop();
});

describe('metadata keys', () => {
  for (const [raw, field] of [
    ['{"__proto__":{"admin":true},"a":1}', 'metadata.__proto__'],
    ['{"a":{"list":[{"__proto__":{"x":1}}]}}', 'metadata.a.list.0.__proto__'],
  ] as const) {
    it(`refuses ${raw} with a 400 naming ${field}`, async () => {
      const r = await stack.request('POST', '/v1/documents', {
        raw: `{"id":"proto","text":${JSON.stringify(TEXT)},"metadata":${raw}}`,
      });
      expect(r.status, r.text).toBe(400);
      expect(r.body.error).toMatchObject({ code: 'INVALID_ARGUMENT', field });
      expect(r.body.error?.message).toContain('__proto__');
      expect((await stack.request('GET', '/v1/documents/proto')).status).toBe(404);
    });
  }

  it('keeps other metadata exactly as given', async () => {
    const metadata = { a: 1, nested: { constructor: 'x', prototype: [1, { b: null }] } };
    const r = await stack.request('POST', '/v1/documents', { body: { id: 'meta', text: TEXT, metadata } });
    expect(r.status, r.text).toBe(202);
    expect((await stack.request('GET', '/v1/documents/meta')).body.metadata).toEqual(metadata);
  });
});

describe('cacheblend rebuild', () => {
  it("keeps a document's createdAt", async () => {
    const post = (metadata: object) =>
      stack.request('POST', '/v1/documents', { body: { id: 'dated', text: TEXT, metadata } });
    expect((await post({ v: 1 })).status).toBe(202);
    await new Promise((r) => setTimeout(r, 20));
    expect((await post({ v: 2 })).status).toBe(202); // a new version: updatedAt moves, createdAt does not
    const before = (await stack.ready('dated')).body;
    expect(before.updatedAt).not.toBe(before.createdAt);

    await admin.flushall(); // Redis lost everything; the manifests in the store remain
    await waitFor(async () => (await stack.request('GET', '/v1/documents/dated')).status === 404, 5_000);
    await rebuildCommand({ json: true }, () => undefined, stack.config);
    const after = (await stack.ready('dated')).body;
    expect(after.createdAt).toBe(before.createdAt);
    expect(after.updatedAt).toBe(before.updatedAt);
    expect(after.metadata).toEqual({ v: 2 });
  });
});
