/**
 * The access log's levels: a readiness probe answering 503 (the API up, no blend worker yet, as during
 * start) is an info line without a stack trace; a 503 from any other route stays at error level. A second
 * API on a taken port says so.
 */
import express from 'express';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessLog } from '../../api/access-log.js';
import { startApi, type ApiServer } from '../../api/server.js';
import { createLogger } from '../../core/ops/log.js';
import { serviceConfig, type TestServiceEnv } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';

type Line = Record<string, unknown>;
const sink = (lines: Line[]) => ({ write: (line: string) => void lines.push(JSON.parse(line) as Line) });

let redis: RedisHandle;
let env: TestServiceEnv;
let api: ApiServer;
const lines: Line[] = [];

beforeAll(async () => {
  redis = await startRedis();
  env = await serviceConfig({ redis, label: 'access-log' });
  api = await startApi({ config: env.config, port: 0, log: createLogger('info', 'api', sink(lines)) });
  await api.modelReady;
});

afterAll(async () => {
  await api?.close();
  await Promise.all([redis?.stop(), env?.cleanup()]);
});

describe('a port already taken', () => {
  it('is refused with a message naming it, and the second API closes what it opened', async () => {
    await expect(startApi({ config: env.config, port: api.port, host: '127.0.0.1' })).rejects.toThrow(
      `port ${api.port} on 127.0.0.1 is taken: another process is listening there`,
    );
    expect((await fetch(`${api.url}/healthz`)).status).toBe(200); // the first one still serves
  });
});

describe('access log levels', () => {
  it('logs a readiness probe answering 503 at info level, without a stack trace', async () => {
    const res = await fetch(`${api.url}/readyz`);
    expect(res.status).toBe(503);
    expect(
      ((await res.json()) as { error: { checks: Record<string, string> } }).error.checks.workers,
    ).not.toBe('ok');
    const line = lines.find((l) => l.msg === 'GET /readyz 503');
    expect(line).toBeDefined();
    expect(line).toMatchObject({ level: 30, res: { status: 503 } });
    expect(line).not.toHaveProperty('err');
    expect(JSON.stringify(line)).not.toContain('stack');
  });

  it("keeps other 5xx replies at error level, still without pino-http's own stack", async () => {
    const seen: Line[] = [];
    const app = express();
    app.use(accessLog(createLogger('info', 'api', sink(seen))));
    app.get('/v1/thing', (_req, res) => void res.status(503).json({ error: { code: 'UNAVAILABLE' } }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((done) => server.once('listening', done));
    try {
      const { port } = server.address() as AddressInfo;
      expect((await fetch(`http://127.0.0.1:${port}/v1/thing`)).status).toBe(503);
      await new Promise((done) => setTimeout(done, 20));
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ level: 50, msg: 'GET /v1/thing 503' });
      expect(JSON.stringify(seen[0])).not.toContain('logger.js');
    } finally {
      server.close();
    }
  });
});
