/**
 * End to end over HTTP (test/helpers/e2e-service.ts): documents ingested, stored and deleted, and queries
 * answered in every mode as the CLI answers them, from the LRU, as jobs and as server-sent events; with
 * the chunk caches in s3rver and again in radosgw.
 * service-failures.test.ts has bad input, timeouts and outages.
 */
import { describe, expect, it } from 'vitest';
import { chunkKey, chunkObjectKey } from '../../core/kv/format.js';
import { manifestObjectKey } from '../../core/documents/manifest.js';
import { DOCS, MAX_TOKENS, QUESTION, cli, useE2eService } from '../helpers/e2e-service.js';
import { RGW_SKIPPED, rgwLabel } from '../helpers/rgw.js';
import { waitFor } from '../helpers/service.js';

// On s3rver, and on radosgw (a real S3 server: test/setup/rgw.ts; skipped, loudly, when the run has none).
describe.each(['s3rver', 'radosgw'] as const)('CacheBlend service over HTTP (store: %s)', (server) => {
  if (server === 'radosgw' && RGW_SKIPPED) {
    it.skip(rgwLabel('runs on radosgw'), () => undefined);
    return;
  }
  const svc = useE2eService({ server });
  const { http, manifest } = svc;

  it('is healthy and ready', async () => {
    expect(await http('GET', '/healthz')).toMatchObject({ status: 200, body: { status: 'ok' } });
    const ready = await http('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ status: 'ready', checks: { redis: 'ok', store: 'ok', model: 'ok' } });
  });

  it('ingests three documents and precomputes their chunks', async () => {
    for (const d of DOCS) {
      const r = await http('POST', '/v1/documents', { ...d, metadata: { title: d.id } });
      expect(r.status).toBe(202);
      expect(r.body.id).toBe(d.id);
      expect(r.body.chunks).toBeGreaterThan(1);
    }
    for (const d of DOCS) {
      const s = await waitFor(
        async () => {
          const r = await http('GET', `/v1/documents/${d.id}`);
          expect(r.status).toBe(200);
          return r.body.status === 'ready' ? r.body : null;
        },
        30_000,
        `${d.id} ready`,
      );
      expect(s).toMatchObject({ id: d.id, metadata: { title: d.id }, progress: { fraction: 1 } });
      expect((s.chunks as { status: string }[]).every((c) => c.status === 'ready')).toBe(true);
    }
  });

  it('stores manifests and chunk objects under the documented keys', async () => {
    const listed = new Set<string>();
    for await (const k of svc.store.list('kv/')) listed.add(k);
    const expected = new Set<string>();
    for (const d of DOCS) {
      const m = await manifest(d.id);
      expect(m.fingerprint).toBe(svc.fingerprint);
      expect(
        m.chunks
          .map((c) => c.text)
          .join(' ')
          .split(/\s+/),
      ).toEqual(d.text.split(/\s+/));
      for (const c of m.chunks) {
        expect(c.key).toBe(chunkKey(svc.fingerprint, c.tokenIds));
        expected.add(chunkObjectKey(svc.fingerprint, c.key));
      }
    }
    expect(listed).toEqual(expected);
  });

  for (const mode of ['full', 'prefix', 'reuse', 'blend']) {
    it(`answers in ${mode} mode exactly as the CLI does for the same chunks`, async () => {
      const r = await http('POST', '/v1/query', {
        question: QUESTION,
        documents: DOCS.map((d) => d.id),
        mode,
        maxTokens: MAX_TOKENS,
      });
      expect(r.status).toBe(200);
      const chunks = (await Promise.all(DOCS.map((d) => manifest(d.id)))).flatMap((m) => m.chunks);
      const expected = await cli(
        chunks.map((c) => c.text),
        mode,
      );
      expect(expected.text.length).toBeGreaterThan(0);
      expect(r.body.answer).toBe(expected.text);
      expect(r.body.tokens).toEqual(expected.generatedTokens);
      const contextTokens = chunks.reduce((a, c) => a + c.tokenIds.length, 0);
      expect(r.body).toMatchObject({ mode, contextTokens });
      const expectRecomputed = { full: contextTokens, reuse: 0, blend: Math.floor(0.15 * contextTokens) }[
        mode
      ];
      if (expectRecomputed !== undefined) expect(r.body.recomputedTokens).toBe(expectRecomputed);
      const timings = r.body.timings as Record<string, number>;
      for (const t of ['loadMs', 'computeMs', 'queueMs', 'totalMs'])
        expect(timings[t]).toBeGreaterThanOrEqual(0);
      expect(r.body.ttftMs).toBeGreaterThan(0);
      const cache = r.body.cache as { hits: Record<string, number>; misses: number };
      const opened = mode === 'full' ? 0 : mode === 'prefix' ? 1 : chunks.length;
      expect(cache.hits.lru + cache.hits.disk + cache.hits.store).toBe(opened);
      expect(cache.misses).toBe(0);
    });
  }

  it('serves the second query of the same chunks from the LRU', async () => {
    const r = await http('POST', '/v1/query', { question: 'Tom opened the box', documents: ['story-1'] });
    expect(r.status).toBe(200);
    const n = (await manifest('story-1')).chunks.length;
    expect((r.body.cache as { hits: Record<string, number> }).hits).toEqual({
      gpu: 0,
      lru: n,
      disk: 0,
      store: 0,
    });
  });

  it('runs a query asynchronously and reports it under /v1/jobs', async () => {
    const r = await http('POST', '/v1/query?async=1', {
      question: QUESTION,
      documents: ['story-0'],
      maxTokens: 8,
    });
    expect(r.status).toBe(202);
    const jobId = r.body.jobId as string;
    const done = await waitFor(
      async () => {
        const j = await http('GET', `/v1/jobs/${jobId}`);
        expect(j.status).toBe(200);
        return j.body.state === 'completed' ? j.body : null;
      },
      20_000,
      'job completed',
    );
    const sync = await http('POST', '/v1/query', {
      question: QUESTION,
      documents: ['story-0'],
      maxTokens: 8,
    });
    expect((done.result as { answer: string }).answer).toBe(sync.body.answer);
    expect((await http('GET', '/v1/jobs/no-such-job')).status).toBe(404);
  });

  it('streams tokens as server-sent events', async () => {
    const body = { question: QUESTION, documents: ['story-0', 'story-2'], maxTokens: 12 };
    const r = await http('POST', '/v1/query', { ...body, stream: true });
    expect(r.status).toBe(200);
    const events = r.text
      .trim()
      .split('\n\n')
      .map((block) => {
        const [event, data] = block.split('\n');
        return { event: event.slice('event: '.length), data: JSON.parse(data.slice('data: '.length)) };
      });
    expect(events[0].event).toBe('job');
    expect(events.at(-1)!.event).toBe('done');
    const tokens = events.filter((e) => e.event === 'token');
    expect(tokens.length).toBeGreaterThan(1);
    const answer = events.at(-1)!.data.answer as string;
    expect(tokens.map((e) => e.data.delta).join('')).toBe(answer);
    expect((await http('POST', '/v1/query', body)).body.answer).toBe(answer);
  });

  it('exports Prometheus metrics', async () => {
    const r = await http('GET', '/metrics');
    expect(r.status).toBe(200);
    for (const name of [
      'cacheblend_http_request_duration_seconds_bucket',
      'cacheblend_job_duration_seconds_bucket{le="0.1",queue="blend"',
      'cacheblend_query_ttft_seconds_count{mode="blend"}',
      'cacheblend_chunk_cache_hits_total{tier="lru"}',
      'cacheblend_chunk_cache_hits_total{tier="store"}',
      'cacheblend_kv_bytes_loaded_total{tier="store"}',
      'cacheblend_recompute_ratio_bucket',
      'cacheblend_precompute_bytes_written_total',
    ]) {
      expect(r.text).toContain(name);
    }
  });

  it('deletes a document and the chunk objects only it used', async () => {
    const m = await manifest('story-2');
    const r = await http('DELETE', '/v1/documents/story-2');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: 'story-2', deleted: true, chunksDeleted: m.chunks.length });
    for (const c of m.chunks) expect(await svc.store.head(chunkObjectKey(svc.fingerprint, c.key))).toBeNull();
    expect(await svc.store.head(manifestObjectKey('story-2'))).toBeNull();
    expect((await http('GET', '/v1/documents/story-2')).status).toBe(404);
    const kept = await manifest('story-0');
    for (const c of kept.chunks)
      expect(await svc.store.head(chunkObjectKey(svc.fingerprint, c.key))).not.toBeNull();
  });
});
