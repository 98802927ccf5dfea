/**
 * A store that is slow or stops answering, through a TCP proxy in front of s3rver, and again in front of
 * radosgw (a real S3 server: test/setup/rgw.ts):
 * - answering after 3 s: queries are answered by recomputing, well inside their timeout;
 * - accepting connections and never answering (open keep-alive connections included): queries are still
 *   answered by recomputing, an ingest answers 503 within seconds, and once the store answers again the
 *   next queries read from it at once (no hung connections left to wait out);
 * - nothing acknowledged is lost: the document stored before the outage is intact afterwards, and one
 *   acknowledged just before it is precomputed within seconds of the store answering again (a guard:
 *   this held before the deadlines too; slow recovery after an outage: store-recovery.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STORY_SETS } from '../helpers/models.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { RGW_SKIPPED, rgwLabel, startRgw } from '../helpers/rgw.js';
import { startRedis, startS3, type RedisHandle, type S3Handle } from '../helpers/services.js';
import { startStack, type Reply, type Stack } from '../helpers/stack.js';

const QUERY_TIMEOUT_MS = 15_000;
let redis: RedisHandle;
let s3: S3Handle;
let proxy: FaultProxy;
let stack: Stack;

/** The service on `server` behind a fault proxy, with one document precomputed; torn down after the suite. */
function useStackOn(server: S3Handle['server']): void {
  beforeAll(async () => {
    [redis, s3] = await Promise.all([
      startRedis(),
      server === 'radosgw' ? startRgw('store-faults') : startS3(),
    ]);
    proxy = await startFaultProxy(s3.endpoint);
    stack = await startStack({
      redis,
      s3: { ...s3, endpoint: proxy.url },
      label: 'store-faults',
      // No disk tier: every query that misses the LRU reads the store.
      env: { QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS), DISK_CACHE_BYTES: '0', RECONCILE_INTERVAL_MS: '0' },
    });
    const r = await stack.request('POST', '/v1/documents', {
      body: { id: 'doc', text: STORY_SETS[0].chunks.join('\n\n') },
    });
    expect(r.status).toBe(202);
    await stack.ready('doc');
  });

  afterAll(async () => {
    proxy?.set({ kind: 'pass' });
    await stack?.close();
    await proxy?.stop();
    await Promise.all([redis?.stop(), s3?.stop()]);
  });
}

const query = () =>
  stack.request('POST', '/v1/query', {
    body: { question: 'What happened next', documents: ['doc'], maxTokens: 8 },
    timeoutMs: QUERY_TIMEOUT_MS + 10_000,
  });

interface CacheStats {
  hits: { store: number };
  misses: number;
}
const sum = (replies: Reply[], f: (cache: CacheStats) => number) =>
  replies.reduce((a, r) => a + f(r.body.cache as CacheStats), 0);

/** Four concurrent queries that must read the store (the LRU emptied first); their replies and wall time. */
async function fourQueries(): Promise<{ replies: Reply[]; ms: number }> {
  await stack.thread.call('clearLru', []);
  const t0 = Date.now();
  const replies = await Promise.all([query(), query(), query(), query()]);
  return { replies, ms: Date.now() - t0 };
}

describe.each(['s3rver', 'radosgw'] as const)('a slow or silent store (%s)', (server) => {
  if (server === 'radosgw' && RGW_SKIPPED) {
    it.skip(rgwLabel('runs on radosgw'), () => undefined);
    return;
  }
  useStackOn(server);

  it('answers queries from the store while it is healthy (the baseline)', async () => {
    const { replies } = await fourQueries();
    for (const r of replies) expect(r.status, r.text).toBe(200);
    expect(sum(replies, (c) => c.hits.store)).toBeGreaterThan(0);
  });

  it('answers by recomputing when the store answers only after 3 s', async () => {
    proxy.set({ kind: 'delay', delayMs: 3_000 });
    const { replies, ms } = await fourQueries();
    proxy.set({ kind: 'pass' });
    for (const r of replies) expect(r.status, r.text).toBe(200);
    // The first query recomputes the chunks; the others find them in the LRU it filled.
    expect(sum(replies, (c) => c.misses)).toBeGreaterThan(0);
    expect(ms).toBeLessThan(QUERY_TIMEOUT_MS / 2);
  });

  it('answers queries, refuses ingests quickly, and recovers at once when the store goes silent', async () => {
    proxy.set({ kind: 'silent' });
    const { replies, ms } = await fourQueries();
    for (const r of replies) expect(r.status, r.text).toBe(200);
    // The first query recomputes the chunks; the others find them in the LRU it filled.
    expect(sum(replies, (c) => c.misses)).toBeGreaterThan(0);
    expect(ms).toBeLessThan(QUERY_TIMEOUT_MS / 2);

    const t0 = Date.now();
    const ingest = await stack.request('POST', '/v1/documents', {
      body: { id: 'during', text: STORY_SETS[1].chunks.join('\n\n') },
      timeoutMs: 60_000,
    });
    expect(ingest.status, ingest.text).toBe(503);
    expect(ingest.body.error?.code).toBe('UNAVAILABLE');
    expect(Date.now() - t0).toBeLessThan(8_000);

    proxy.set({ kind: 'pass' });
    const after = await fourQueries();
    for (const r of after.replies) expect(r.status, r.text).toBe(200);
    expect(sum(after.replies, (c) => c.hits.store)).toBeGreaterThan(0);
    expect(after.ms).toBeLessThan(5_000);
    const again = await stack.request('POST', '/v1/documents', {
      body: { id: 'during', text: STORY_SETS[1].chunks.join('\n\n') },
    });
    expect(again.status).toBe(202);
    await stack.ready('during');
    expect((await stack.request('GET', '/v1/documents/doc')).body.status).toBe('ready');
  });

  it('precomputes a document acknowledged before the store went silent soon after it answers again', async () => {
    const worker = stack.precompute!.worker;
    await worker.pause();
    const r = await stack.request('POST', '/v1/documents', {
      body: { id: 'acked', text: STORY_SETS[2].chunks.join('\n\n') },
    });
    expect(r.status).toBe(202);
    proxy.set({ kind: 'silent' });
    worker.resume(); // its jobs meet a store that does not answer
    await new Promise((res) => setTimeout(res, 3_000));
    proxy.set({ kind: 'pass' });
    const t0 = Date.now();
    await stack.ready('acked', { timeoutMs: 30_000 });
    // Attempts end at their deadlines (2 s reads, 5 s writes) and retry after 1, 2, 4 s: not after the
    // S3 client's 120 s request timeout.
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});
