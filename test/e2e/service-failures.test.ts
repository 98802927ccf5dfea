/**
 * End to end over HTTP (test/helpers/e2e-service.ts), what goes wrong: bad input (4xx naming the
 * problem), a query that outlives its deadline, and the object store or Redis going down.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { startApi } from '../../api/server.js';
import { DOCS, QUESTION, useE2eService } from '../helpers/e2e-service.js';
import { serviceConfig, waitFor } from '../helpers/service.js';

const svc = useE2eService();
const { http } = svc;

beforeAll(async () => {
  // story-0 ready, and its chunks in the blend worker's LRU (the store outage test queries it from there).
  expect((await http('POST', '/v1/documents', DOCS[0])).status).toBe(202);
  await waitFor(
    async () => (await http('GET', `/v1/documents/${DOCS[0].id}`)).body.status === 'ready',
    30_000,
    `${DOCS[0].id} ready`,
  );
  expect((await http('POST', '/v1/query', { question: QUESTION, documents: [DOCS[0].id] })).status).toBe(200);
});

describe('CacheBlend service over HTTP: failures', () => {
  it('answers 504 with the job id when a query outlives QUERY_TIMEOUT_MS, and cancels the job', async () => {
    const impatient = await serviceConfig({
      redis: svc.redisServer,
      s3: svc.s3,
      label: 'e2e',
      env: {
        QUEUE_PREFIX: svc.env.config.queuePrefix,
        KV_STORE_URL: svc.env.config.kvStoreUrl,
        QUERY_TIMEOUT_MS: '1',
      },
    });
    const other = await startApi({ config: impatient.config, port: 0, model: await svc.api.modelReady });
    try {
      const r = await http(
        'POST',
        '/v1/query',
        { question: QUESTION, documents: ['story-0'] },
        undefined,
        other.url,
      );
      expect(r.status).toBe(504);
      expect(r.body.error).toMatchObject({ code: 'TIMEOUT' });
      const jobId = r.body.error!.jobId!;
      // Removed while it waited, or stopped by its worker: never answered for nobody.
      const after = await waitFor(
        async () => {
          const j = await http('GET', `/v1/jobs/${jobId}`);
          return j.status === 404 || j.body.state === 'failed' ? j : null;
        },
        20_000,
        'the job cancelled',
      );
      if (after.status === 200)
        expect(after.body.error, JSON.stringify(after.body)).toMatchObject({ code: 'CANCELLED' });
    } finally {
      await other.close();
      await impatient.cleanup();
    }
  });

  it('rejects bad input with 400 naming the field, 404 for unknown ids, 413 for big bodies', async () => {
    const bad: [string, string, unknown, string][] = [
      ['POST', '/v1/query', {}, 'question'],
      ['POST', '/v1/query', { question: '', documents: ['story-0'] }, 'question'],
      ['POST', '/v1/query', { question: 'q', documents: [] }, 'documents'],
      ['POST', '/v1/query', { question: 'q', documents: ['../etc'] }, 'documents.0'],
      ['POST', '/v1/query', { question: 'q', documents: ['story-0'], mode: 'fast' }, 'mode'],
      ['POST', '/v1/query', { question: 'q', documents: ['story-0'], ratio: 1.5 }, 'ratio'],
      ['POST', '/v1/query', { question: 'q', documents: ['story-0'], maxTokens: 2.5 }, 'maxTokens'],
      ['POST', '/v1/query', { question: 'q', documents: ['story-0'], temperature: -1 }, 'temperature'],
      ['POST', '/v1/query', { question: 'q', documents: ['story-0'], colour: 'red' }, 'colour'],
      ['POST', '/v1/documents', {}, 'text'],
      ['POST', '/v1/documents', { text: 'a', chunks: ['b'] }, 'text'],
      ['POST', '/v1/documents', { text: '' }, 'text'],
      ['POST', '/v1/documents', { chunks: ['ok', ''] }, 'chunks.1'],
      ['POST', '/v1/documents', { id: 'has space', text: 'x' }, 'id'],
      ['POST', '/v1/documents', { text: 'x', metadata: 'no' }, 'metadata'],
      ['POST', '/v1/documents', [1, 2], 'body'],
    ];
    for (const [method, path, body, field] of bad) {
      const r = await http(method, path, body);
      expect(r.status, `${JSON.stringify(body)}`).toBe(400);
      expect(r.body.error?.code).toBe('INVALID_ARGUMENT');
      expect(r.body.error?.field).toBe(field);
      expect(r.body.error?.message.startsWith(`${field}: `)).toBe(true);
    }
    const json = await http('POST', '/v1/query', undefined, '{"question": ');
    expect(json.status).toBe(400);
    expect(json.body.error?.code).toBe('INVALID_JSON');

    const long = await http('POST', '/v1/query', { question: 'q', documents: ['story-0'], maxTokens: 4000 });
    expect(long.status).toBe(400);
    expect(long.body.error).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'maxTokens' });
    expect(long.body.error?.message).toContain("exceeds the model's context of 512 tokens");

    const missing = await http('POST', '/v1/query', { question: 'q', documents: ['story-0', 'nope'] });
    expect(missing.status).toBe(404);
    expect(missing.body.error?.message).toContain('"nope"');
    expect((await http('GET', '/v1/documents/nope')).status).toBe(404);
    expect((await http('DELETE', '/v1/documents/nope')).status).toBe(404);
    expect((await http('GET', '/v1/nothing-here')).body.error?.code).toBe('NOT_FOUND');

    const big = await http('POST', '/v1/documents', { text: 'word '.repeat(20_000) });
    expect(big.status).toBe(413);
    expect(big.body.error?.code).toBe('PAYLOAD_TOO_LARGE');
    for (const r of [json, missing, big]) expect(r.text).not.toMatch(/\n\s+at /);
  });

  it('answers 503 when the object store is unreachable, and still answers queries', async () => {
    await svc.s3.stop();
    const t0 = Date.now();
    const ingest = await http('POST', '/v1/documents', { text: 'The store is down.' });
    expect(ingest.status).toBe(503);
    expect(ingest.body.error?.code).toBe('UNAVAILABLE');
    const ready = await http('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.error?.message).toMatch(/store/);
    expect(Date.now() - t0).toBeLessThan(15_000);
    // Status lives in Redis; cached chunks live in the worker's LRU: both still work.
    expect((await http('GET', '/v1/documents/story-0')).status).toBe(200);
    const q = await http('POST', '/v1/query', { question: QUESTION, documents: ['story-0'], maxTokens: 4 });
    expect(q.status).toBe(200);
  });

  it('answers 503 (fast, no hang) while Redis is down', async () => {
    await svc.closeWorkers();
    await svc.redisServer.stop();
    const t0 = Date.now();
    const replies = await Promise.all([
      http('POST', '/v1/documents', { text: 'Hello there.' }),
      http('GET', '/v1/documents/story-0'),
      http('DELETE', '/v1/documents/story-0'),
      http('POST', '/v1/query', { question: QUESTION, documents: ['story-0'] }),
      http('GET', '/readyz'),
    ]);
    for (const r of replies) {
      expect(r.status).toBe(503);
      expect(r.body.error?.code).toBe('UNAVAILABLE');
    }
    expect(replies.at(-1)!.body.error?.message).toMatch(/redis/i);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});
