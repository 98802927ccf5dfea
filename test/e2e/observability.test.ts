/**
 * What an operator reads: one access-log line per request with a request id, the id echoed to the client
 * and carried into the jobs the request makes (and the worker's log lines about them), and an OpenAPI
 * document that is valid and names every route the API serves. Real Redis, file store, stories260K.
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiServer } from '../../api/server.js';
import {
  engineThreadInit,
  startEngineThread,
  type EngineThread,
} from '../../core/inference/engine-thread.js';
import { createLogger } from '../../core/ops/log.js';
import { BLEND_QUEUE, type BlendJobData } from '../../core/queue/contracts.js';
import { createRedis, closeRedis, keyPrefix } from '../../core/queue/redis.js';
import { startPrecomputeWorker, type PrecomputeWorker } from '../../precompute/precompute-worker.js';
import { startBlendWorker, type BlendWorker } from '../../worker/blend-worker.js';
import { STORY_SETS } from '../helpers/models.js';
import { serviceConfig, waitFor, type TestServiceEnv } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';

let redisServer: RedisHandle;
let env: TestServiceEnv;
let thread: EngineThread;
let precompute: PrecomputeWorker;
let blend: BlendWorker;
let api: ApiServer;
const apiLines: Record<string, unknown>[] = [];
const workerLines: Record<string, unknown>[] = [];

const sink = (lines: Record<string, unknown>[]) => ({
  write: (line: string) => {
    lines.push(JSON.parse(line) as Record<string, unknown>);
  },
});

beforeAll(async () => {
  redisServer = await startRedis();
  env = await serviceConfig({ redis: redisServer, label: 'obs', env: { CHUNK_TOKEN_BUDGET: '128' } });
  const { config } = env;
  thread = await startEngineThread(engineThreadInit(config, { threads: 1 }));
  const workerLog = createLogger('info', 'worker', sink(workerLines));
  [precompute, blend, api] = await Promise.all([
    startPrecomputeWorker({ config, thread, reconcileMs: 0, log: workerLog }),
    startBlendWorker({ config, thread, log: workerLog }),
    startApi({ config, port: 0, log: createLogger('info', 'api', sink(apiLines)) }),
  ]);
  await api.modelReady;
});

afterAll(async () => {
  await Promise.all([blend?.close(), precompute?.close()]);
  await api?.close();
  await thread?.terminate();
  await Promise.all([redisServer?.stop(), env?.cleanup()]);
});

function post(path: string, body: unknown, requestId?: string) {
  return fetch(`${api.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(requestId && { 'x-request-id': requestId }) },
    body: JSON.stringify(body),
  });
}

describe('request ids and access logs', () => {
  it('echoes a given request id, makes one otherwise, and logs one access line per request', async () => {
    const given = await fetch(`${api.url}/healthz`, { headers: { 'x-request-id': 'probe-1' } });
    expect(given.headers.get('x-request-id')).toBe('probe-1');
    const made = await fetch(`${api.url}/healthz`, { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const lines = apiLines.filter((l) => l.msg === 'GET /healthz 200');
    expect(lines.map((l) => l.requestId)).toEqual(['probe-1', made.headers.get('x-request-id')]);
    expect(lines[0]).toMatchObject({ level: 30, name: 'api', req: { method: 'GET', url: '/healthz' } });
    expect(typeof lines[0].responseTime).toBe('number');
  });

  it('carries the id into the jobs a request makes and the worker log lines about them', async () => {
    const ingest = await post('/v1/documents', { id: 'obs-doc', chunks: STORY_SETS[0].chunks }, 'ingest-7');
    expect(ingest.status).toBe(202);
    // A route of a mounted router logs its whole path.
    expect(apiLines.find((l) => l.requestId === 'ingest-7')).toMatchObject({
      msg: 'POST /v1/documents 202',
      req: { url: '/v1/documents' },
    });
    await waitFor(async () => {
      const r = (await (await fetch(`${api.url}/v1/documents/obs-doc`)).json()) as { status: string };
      return r.status === 'ready';
    });
    const queued = await post('/v1/query?async=1', { question: 'Lily', documents: ['obs-doc'] }, 'query-8');
    const { jobId } = (await queued.json()) as { jobId: string };
    const redis = createRedis(env.config, 'producer');
    const queue = new Queue(BLEND_QUEUE, { connection: redis, prefix: keyPrefix(env.config.queuePrefix) });
    try {
      const job = await Job.fromId<BlendJobData>(queue, jobId);
      expect(job?.data.requestId).toBe('query-8');
      // A job the worker fails (made for another model, as a stale producer would send): its log line
      // names the request that made it.
      await queue.add('query', { ...job!.data, fingerprint: 'f'.repeat(64), requestId: 'query-failing' });
      await waitFor(async () => workerLines.some((l) => l.requestId === 'query-failing'), 10_000, 'log line');
      const failed = workerLines.find((l) => l.requestId === 'query-failing');
      expect(failed).toMatchObject({ level: 40, msg: 'blend job failed' });
    } finally {
      await queue.close();
      await closeRedis(redis);
    }
    // Raw chunks that cannot fit the context are measured and refused by the API: nothing is queued.
    const tooLong = await post(
      '/v1/query',
      { question: 'Lily', chunks: ['and then '.repeat(300)] },
      'too-long',
    );
    expect(tooLong.status).toBe(413);
  });
});

describe('OpenAPI document', () => {
  it('is valid OpenAPI 3.1 and every operation it lists is served', async () => {
    const res = await fetch(`${api.url}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    const result = await new Validator().validate(doc as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe('3.1.0');
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const method of Object.keys(ops)) {
        const url = `${api.url}${path.replace(/\{[^}]+\}/g, 'x-1')}`;
        const r = await fetch(url, {
          method: method.toUpperCase(),
          ...(method === 'post' && { headers: { 'content-type': 'application/json' }, body: '{}' }),
        });
        const body = await r.text();
        expect(body, `${method} ${path}`).not.toContain('no route for');
      }
    }
  });
});
