/**
 * A Redis that answers PING but refuses every write (maxmemory reached under noeviction, the policy the
 * service requires): ingests and queries get 503, so /readyz must say 503 too at once (the refused write
 * drops its cached probe), naming Redis, and say 200 again once Redis accepts writes.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STORY_SETS } from '../helpers/models.js';
import { waitFor } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

let redis: RedisHandle;
let stack: Stack;
let admin: Redis;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({ redis, label: 'redis-writes' });
  admin = new Redis(redis.url);
});

afterAll(async () => {
  await admin?.config('SET', 'maxmemory', '0').catch(() => undefined);
  admin?.disconnect();
  await stack?.close();
  await redis?.stop();
});

describe('a Redis refusing writes', () => {
  it('makes /readyz answer 503 naming Redis, and 200 again once it accepts writes', async () => {
    await waitFor(async () => (await stack.request('GET', '/readyz')).status === 200, 10_000, 'ready');
    await admin.config('SET', 'maxmemory', '1'); // below what it uses: every write is refused (OOM)
    await expect(admin.set('probe', '1')).rejects.toThrow(/OOM/);
    const ingest = await stack.request('POST', '/v1/documents', {
      body: { id: 'refused', text: STORY_SETS[0].chunks.join('\n\n') },
    });
    expect(ingest.status).toBe(503);
    // At once: the refused write the service just saw is news its cached write probe (2 s) does not hold.
    const notReady = await stack.request('GET', '/readyz');
    expect(notReady.status).toBe(503);
    expect(notReady.body.error?.checks?.redis).toMatch(/refuses writes.*OOM/);
    const query = await stack.request('POST', '/v1/query', {
      body: { question: 'Who had a ball?', chunks: ['Lily had a red ball.'] },
    });
    expect(query.status).toBe(503);
    expect((await stack.request('GET', '/readyz')).status).toBe(503);
    await admin.config('SET', 'maxmemory', '0');
    await waitFor(async () => (await stack.request('GET', '/readyz')).status === 200, 5_000, 'ready again');
  });
});
