/**
 * Retrieval statistics are a tenant's own, over HTTP with API keys on the real service: tenant A's score
 * for its chunk does not move while tenant B ingests documents full of the same word, nor after B deletes
 * them (one shared index used to shift it both ways, down to negative scores).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

const A = { authorization: 'Bearer acme-key-0123456789abcdef' };
const B = { authorization: 'Bearer globex-key-0123456789abcdef' };
let redis: RedisHandle;
let stack: Stack;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({
    redis,
    label: 'tenant-retrieval',
    env: { API_KEYS: 'acme:acme-key-0123456789abcdef,globex:globex-key-0123456789abcdef' },
  });
});

afterAll(async () => {
  await stack?.close();
  await redis?.stop();
});

async function scoreOfA(): Promise<number> {
  const r = await stack.request('POST', '/v1/query', {
    headers: A,
    body: { question: 'zebracorn cake', topK: 2, maxTokens: 1 },
  });
  expect(r.status, r.text).toBe(200);
  const chunks = (r.body.retrieval as { chunks: { document: string; score: number }[] }).chunks;
  expect(chunks.map((c) => c.document)).toContain('party');
  return chunks.find((c) => c.document === 'party')!.score;
}

describe('retrieval across tenants', () => {
  it("keeps tenant A's scores where they were while B's documents come and go", async () => {
    const post = (headers: object, id: string, text: string) =>
      stack.request('POST', '/v1/documents', {
        headers: headers as Record<string, string>,
        body: { id, text },
      });
    expect((await post(A, 'party', 'Lily baked a zebracorn cake for the party.')).status).toBe(202);
    expect((await post(A, 'park', 'Tom ran in the park with his dog.')).status).toBe(202);
    const alone = await scoreOfA();
    expect(alone).toBeGreaterThan(0);
    for (let i = 0; i < 30; i++) {
      expect((await post(B, `z${i}`, `The zebracorn number ${i} ran far away.`)).status).toBe(202);
    }
    expect(await scoreOfA()).toBe(alone);
    for (let i = 0; i < 30; i++) {
      expect((await stack.request('DELETE', `/v1/documents/z${i}`, { headers: B })).status).toBe(200);
    }
    expect(await scoreOfA()).toBe(alone);
  });
});
