/**
 * Tenants over HTTP (API_KEYS set), on the real service: without a key → 401; each tenant's documents
 * are its own (another tenant gets 404 for them, even with the same id) and its chunk caches are salted
 * apart (the same text makes different chunk keys and objects); /metrics needs its own token; per-key
 * rate limits are counted in Redis, so two API processes share them. (No authentication used to let any
 * client read, delete or query any document.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiServer } from '../../api/server.js';
import { chunkObjectKey } from '../../core/kv/format.js';
import { openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { STORY_SETS } from '../helpers/models.js';
import { serviceConfig } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

const ACME = 'acme-key-0123456789abcdef';
const GLOBEX = 'globex-key-0123456789abcdef';
const METRICS = 'metrics-token-0123456789';
const as = (key: string) => ({ authorization: `Bearer ${key}` });

let redis: RedisHandle;
let stack: Stack;
let store: ObjectStore;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({
    redis,
    label: 'tenants',
    env: { API_KEYS: `acme:${ACME},globex:${GLOBEX}`, METRICS_TOKEN: METRICS, RATE_LIMIT_PER_MINUTE: '1000' },
  });
  store = openObjectStore(stack.config.kvStoreUrl);
});

afterAll(async () => {
  await store?.close();
  await stack?.close();
  await redis?.stop();
});

const text = STORY_SETS[0].chunks.join('\n\n');

describe('authentication', () => {
  it('refuses /v1 without a known key, and leaves health open', async () => {
    const none = await stack.request('GET', '/v1/documents/x');
    expect(none.status).toBe(401);
    expect(none.body.error?.code).toBe('UNAUTHENTICATED');
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(
      (await stack.request('GET', '/v1/documents/x', { headers: as('wrong-key-0123456789') })).status,
    ).toBe(401);
    expect((await stack.request('POST', '/v1/documents', { body: { text } })).status).toBe(401);
    expect((await stack.request('GET', '/healthz')).status).toBe(200);
    expect((await stack.request('GET', '/readyz')).status).toBe(200);
  });

  it('serves /metrics only with the metrics token', async () => {
    expect((await stack.request('GET', '/metrics')).status).toBe(401);
    expect((await stack.request('GET', '/metrics', { headers: as(ACME) })).status).toBe(401);
    const ok = await stack.request('GET', '/metrics', { headers: as(METRICS) });
    expect(ok.status).toBe(200);
    expect(ok.text).toContain('cacheblend_http_request_duration_seconds');
  });
});

describe('isolation', () => {
  it('keeps each tenant’s documents and chunk caches its own', async () => {
    for (const key of [ACME, GLOBEX]) {
      const r = await stack.request('POST', '/v1/documents', {
        body: { id: 'notes', text },
        headers: as(key),
      });
      expect(r.status).toBe(202);
      await stack.ready('notes', { headers: as(key) });
    }
    const keysOf = async (key: string) =>
      (
        (await stack.request('GET', '/v1/documents/notes', { headers: as(key) })).body.chunks as {
          key: string;
        }[]
      ).map((c) => c.key);
    const [acmeKeys, globexKeys] = [await keysOf(ACME), await keysOf(GLOBEX)];
    expect(acmeKeys).toHaveLength(globexKeys.length);
    for (const k of acmeKeys) expect(globexKeys).not.toContain(k); // salted apart

    // acme's private document is invisible to globex: status, delete and query all say 404.
    expect(
      (
        await stack.request('POST', '/v1/documents', {
          body: { id: 'private', text: STORY_SETS[1].chunks.join('\n\n') },
          headers: as(ACME),
        })
      ).status,
    ).toBe(202);
    await stack.ready('private', { headers: as(ACME) });
    expect((await stack.request('GET', '/v1/documents/private', { headers: as(GLOBEX) })).status).toBe(404);
    expect((await stack.request('DELETE', '/v1/documents/private', { headers: as(GLOBEX) })).status).toBe(
      404,
    );
    const q = await stack.request('POST', '/v1/query', {
      body: { question: 'Lily', documents: ['private'], maxTokens: 2 },
      headers: as(GLOBEX),
    });
    expect(q.status).toBe(404);
    const own = await stack.request('POST', '/v1/query', {
      body: { question: 'Lily', documents: ['private'], maxTokens: 2 },
      headers: as(ACME),
    });
    expect(own.status).toBe(200);

    // Deleting acme's copy leaves globex's document and objects intact.
    expect((await stack.request('DELETE', '/v1/documents/notes', { headers: as(ACME) })).status).toBe(200);
    const fp = (await stack.api.modelReady).fingerprint;
    for (const k of acmeKeys) expect(await store.head(chunkObjectKey(fp, k))).toBeNull();
    for (const k of globexKeys) expect(await store.head(chunkObjectKey(fp, k))).not.toBeNull();
    expect((await stack.request('GET', '/v1/documents/notes', { headers: as(GLOBEX) })).body.status).toBe(
      'ready',
    );
  });
});

describe('queries and jobs', () => {
  it('keeps jobs, listings and corpus search within the tenant', async () => {
    const secret = 'The purple dragon guarded the silver castle.';
    expect(
      (
        await stack.request('POST', '/v1/documents', {
          body: { id: 'dragon', text: secret },
          headers: as(ACME),
        })
      ).status,
    ).toBe(202);
    await stack.ready('dragon', { headers: as(ACME) });

    // A job is its tenant's: another tenant cannot read its result.
    const queued = await stack.request('POST', '/v1/query?async=1', {
      body: { question: 'Who guarded the castle?', documents: ['dragon'], maxTokens: 2 },
      headers: as(ACME),
    });
    expect(queued.status).toBe(202);
    const jobId = queued.body.jobId as string;
    expect((await stack.request('GET', `/v1/jobs/${jobId}`, { headers: as(GLOBEX) })).status).toBe(404);
    expect((await stack.request('GET', `/v1/jobs/${jobId}`, { headers: as(ACME) })).status).toBe(200);

    // Listings show only the caller's documents.
    const list = async (key: string) =>
      (
        (await stack.request('GET', '/v1/documents', { headers: as(key) })).body.documents as { id: string }[]
      ).map((d) => d.id);
    expect(await list(ACME)).toContain('dragon');
    expect(await list(GLOBEX)).not.toContain('dragon');

    // A corpus search (no documents named) never draws on another tenant's chunks.
    const search = async (key: string) =>
      stack.request('POST', '/v1/query', {
        body: { question: 'purple dragon silver castle', maxTokens: 2 },
        headers: as(key),
      });
    const own = await search(ACME);
    expect(own.status).toBe(200);
    const used = (own.body.retrieval as { chunks: { document: string }[] }).chunks.map((c) => c.document);
    expect(used).toContain('dragon');
    const other = await search(GLOBEX);
    expect([200, 400]).toContain(other.status);
    const otherUsed = (
      (other.body.retrieval as { chunks: { document: string }[] } | undefined)?.chunks ?? []
    ).map((c) => c.document);
    expect(otherUsed).not.toContain('dragon');
  });
});

describe('per-key rate limits', () => {
  let limited: ApiServer;
  let second: ApiServer;

  beforeAll(async () => {
    const env = {
      QUEUE_PREFIX: stack.config.queuePrefix,
      KV_STORE_URL: stack.config.kvStoreUrl,
      API_KEYS: `acme:${ACME},globex:${GLOBEX}`,
      RATE_LIMIT_PER_MINUTE: '6',
    };
    const model = await stack.api.modelReady;
    const [a, b] = await Promise.all([
      serviceConfig({
        redis,
        label: 'tenants',
        env: { ...env, QUEUE_PREFIX: `${stack.config.queuePrefix}-rl` },
      }),
      serviceConfig({
        redis,
        label: 'tenants',
        env: { ...env, QUEUE_PREFIX: `${stack.config.queuePrefix}-rl` },
      }),
    ]);
    [limited, second] = await Promise.all([
      startApi({ config: a.config, port: 0, model }),
      startApi({ config: b.config, port: 0, model }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([limited?.close(), second?.close()]);
  });

  it('answers 429 with Retry-After past the limit, counting across API processes, per key', async () => {
    const get = (api: ApiServer, key: string) =>
      fetch(`${api.url}/v1/documents/none`, { headers: as(key) }).then(async (r) => ({
        status: r.status,
        retryAfter: r.headers.get('retry-after'),
        body: (await r.json()) as { error?: { code: string } },
      }));
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await get(i % 2 ? second : limited, ACME)).status);
    expect(statuses).toEqual([404, 404, 404, 404, 404, 404]);
    const over = await get(second, ACME);
    expect(over.status).toBe(429);
    expect(over.body.error?.code).toBe('RATE_LIMITED');
    expect(Number(over.retryAfter)).toBeGreaterThan(0);
    expect((await get(limited, GLOBEX)).status).toBe(404); // another key has its own budget
  });
});
