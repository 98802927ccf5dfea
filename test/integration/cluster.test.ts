/**
 * The service on a real three-master Redis Cluster (started on loopback ports): every key carries the
 * `{QUEUE_PREFIX}` hash tag, so the documents' Lua scripts and BullMQ's run on one node; ingest →
 * precompute → query works end to end, the durability check reads every master, and the keys really do
 * sit in one slot of one node.
 */
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { durabilityProblems } from '../../core/queue/durability.js';
import { closeRedis, createRedis, keyPrefix, type RedisClient } from '../../core/queue/redis.js';
import { STORY_SETS } from '../helpers/models.js';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/services.js';
import { waitFor } from '../helpers/service.js';
import { startStack, type Stack } from '../helpers/stack.js';

let cluster: RedisClusterHandle;
let stack: Stack;
let client: RedisClient;

beforeAll(async () => {
  cluster = await startRedisCluster();
  stack = await startStack({ cluster, label: 'cluster' });
  client = createRedis(stack.config, 'producer');
});

afterAll(async () => {
  if (client) await closeRedis(client);
  await stack?.close();
  await cluster?.stop();
});

describe('on a three-node Redis Cluster', () => {
  it('connects as a cluster client and finds every master durable', async () => {
    expect(client).toBeInstanceOf(Cluster);
    // The client learns the slot map when it connects: wait for that (not a fixed time), up to 10 s.
    await waitFor(
      async () => (client as Cluster).status === 'ready' && (client as Cluster).nodes('master').length === 3,
      10_000,
      'the cluster client to know 3 masters',
    );
    expect((client as Cluster).nodes('master')).toHaveLength(3);
    expect(await durabilityProblems(client)).toEqual([]);
  });

  it('ingests, precomputes and answers a query', async () => {
    const text = STORY_SETS[0].chunks.join('\n\n');
    const posted = await stack.request('POST', '/v1/documents', { body: { id: 'lily', text } });
    expect(posted.status).toBe(202);
    expect(posted.body.chunks).toBeGreaterThan(1);
    const ready = await stack.ready('lily');
    expect(ready.body.progress).toMatchObject({ fraction: 1 });
    const q = await stack.request('POST', '/v1/query', {
      body: { question: 'Lily threw the ball and', documents: ['lily'], maxTokens: 8 },
    });
    expect(q.status).toBe(200);
    expect(typeof q.body.answer).toBe('string');
    expect((q.body.cache as { misses: number }).misses).toBe(0);
    expect((await stack.request('GET', '/readyz')).status).toBe(200);
  });

  it('keeps every key of the service in the hash tag’s slot', async () => {
    const tag = keyPrefix(stack.config.queuePrefix);
    const slot = (await (client as Cluster).call('CLUSTER', 'KEYSLOT', tag)) as number;
    const perNode: number[] = [];
    for (const node of (client as Cluster).nodes('master')) {
      const keys = await node.keys(`${tag}:*`);
      perNode.push(keys.length);
      for (const k of keys.slice(0, 50)) expect(await node.call('CLUSTER', 'KEYSLOT', k)).toBe(slot);
    }
    // All on one node: the one serving the slot.
    expect(perNode.filter((n) => n > 0)).toHaveLength(1);
    const found = perNode.reduce((a, n) => a + n, 0);
    expect(found).toBeGreaterThan(0);
  });

  it('deletes the document and its chunks', async () => {
    const r = await stack.request('DELETE', '/v1/documents/lily');
    expect(r.status).toBe(200);
    expect(r.body.chunksDeleted).toBeGreaterThan(0);
    expect((await stack.request('GET', '/v1/documents/lily')).status).toBe(404);
  });
});
