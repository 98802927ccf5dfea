/**
 * A real API + precompute and blend workers (one inference thread, stories260K, a local store) for the
 * tests that drive the OpenAI-compatible routes with the official `openai` client.
 */
import OpenAI from 'openai';
import { expect } from 'vitest';
import { startApi, type ApiServer } from '../../api/server.js';
import { engineThreadInit, startEngineThread } from '../../core/inference/engine-thread.js';
import { startPrecomputeWorker } from '../../precompute/precompute-worker.js';
import { startBlendWorker } from '../../worker/blend-worker.js';
import { serviceConfig, waitFor, type TestServiceEnv } from './service.js';
import { startRedis } from './services.js';

/** A parsed JSON reply, read loosely by tests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export interface OpenAiStack {
  api: ApiServer;
  env: TestServiceEnv;
  client: OpenAI;
  /** POST a JSON body to a path of the API; the reply's status and parsed body. */
  post(
    path: string,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: Json }>;
  /** Ingest a document and wait until its chunks are ready. */
  ingest(id: string, body: { text?: string; chunks?: string[] }): Promise<void>;
  close(): Promise<void>;
}

export async function startOpenAiStack(
  label: string,
  env: Record<string, string> = {},
): Promise<OpenAiStack> {
  const redis = await startRedis();
  const svc = await serviceConfig({ redis, label, env });
  const { config } = svc;
  const thread = await startEngineThread(engineThreadInit(config, { threads: 1 }));
  const [precompute, blend, api] = await Promise.all([
    startPrecomputeWorker({ config, thread, reconcileMs: 0 }),
    startBlendWorker({ config, thread }),
    startApi({ config, port: 0 }),
  ]);
  await api.modelReady;
  const key = config.apiKeys[0]?.key ?? 'not-checked';
  const client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: key, maxRetries: 0 });
  const auth = { authorization: `Bearer ${key}` };
  const post = async (path: string, body: unknown, headers: Record<string, string> = auth) => {
    const res = await fetch(`${api.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  };
  return {
    api,
    env: svc,
    client,
    post,
    async ingest(id, body) {
      const r = await post('/v1/documents', { id, ...body });
      expect(r.status).toBe(202);
      await waitFor(async () => {
        const s = await fetch(`${api.url}/v1/documents/${id}`, { headers: auth });
        return ((await s.json()) as { status: string }).status === 'ready';
      }, 20_000);
    },
    async close() {
      await Promise.all([blend.close(), precompute.close()]);
      await api.close();
      await thread.terminate();
      await Promise.all([redis.stop(), svc.cleanup()]);
    },
  };
}
