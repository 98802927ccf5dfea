/**
 * The whole service in this process, as `cacheblend serve` composes it: the API, a blend worker and a
 * precompute worker (sharing one inference thread), on real Redis (or a Redis Cluster) and a file store
 * or s3rver — plus a small HTTP client for it.
 */
import { startApi, type ApiServer } from '../../api/server.js';
import type { Config } from '../../core/config/index.js';
import {
  engineThreadInit,
  startEngineThread,
  type EngineThread,
} from '../../core/inference/engine-thread.js';
import type { Logger } from '../../core/ops/log.js';
import { startPrecomputeWorker, type PrecomputeWorker } from '../../precompute/precompute-worker.js';
import { startBlendWorker, type BlendWorker } from '../../worker/blend-worker.js';
import { requestJson } from './http.js';
import { serviceConfig, type TestServiceEnv } from './service.js';
import type { RedisClusterHandle, RedisHandle, S3Handle } from './services.js';

export interface Reply<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T & {
    error?: {
      code: string;
      message: string;
      field?: string;
      jobId?: string;
      checks?: Record<string, string>;
    };
  };
  text: string;
}

export interface Stack {
  env: TestServiceEnv;
  config: Config;
  thread: EngineThread;
  api: ApiServer;
  blend: BlendWorker | null;
  precompute: PrecomputeWorker | null;
  request(
    method: string,
    path: string,
    opts?: { body?: unknown; raw?: string | Buffer; headers?: Record<string, string>; timeoutMs?: number },
  ): Promise<Reply>;
  /** Wait until a document is ready (throws when one of its chunks failed or time runs out). */
  ready(id: string, opts?: { headers?: Record<string, string>; timeoutMs?: number }): Promise<Reply>;
  close(): Promise<void>;
}

export interface StackOptions {
  redis?: RedisHandle;
  cluster?: RedisClusterHandle;
  s3?: S3Handle;
  label: string;
  env?: Record<string, string>;
  /** Which workers to start (default both). */
  blend?: boolean;
  precompute?: boolean;
  log?: Logger;
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  const env = await serviceConfig({
    redis: opts.redis,
    cluster: opts.cluster,
    s3: opts.s3,
    label: opts.label,
    env: opts.env,
  });
  const { config } = env;
  const thread = await startEngineThread(engineThreadInit(config, { threads: 1 }));
  const log = opts.log;
  const [precompute, blend] = await Promise.all([
    opts.precompute === false ? null : startPrecomputeWorker({ config, thread, log }),
    opts.blend === false ? null : startBlendWorker({ config, thread, log }),
  ]);
  const api = await startApi({ config, port: 0, log });
  await api.modelReady;
  const request: Stack['request'] = (method, path, o = {}) =>
    requestJson<Reply['body']>(`${api.url}${path}`, { method, ...o });
  const ready: Stack['ready'] = async (id, o = {}) => {
    const deadline = Date.now() + (o.timeoutMs ?? 30_000);
    for (;;) {
      const r = await request('GET', `/v1/documents/${id}`, { headers: o.headers });
      if (r.body.status === 'ready') return r;
      if (r.body.status === 'failed') throw new Error(`document ${id} failed: ${r.text}`);
      if (Date.now() > deadline) throw new Error(`document ${id} not ready in time: ${r.text}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  };
  return {
    env,
    config,
    thread,
    api,
    blend,
    precompute,
    request,
    ready,
    async close() {
      await Promise.all([blend?.close(), precompute?.close()]);
      await api.close();
      await thread.terminate();
      await env.cleanup();
    },
  };
}
