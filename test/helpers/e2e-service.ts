/**
 * The service of the end-to-end HTTP tests: the API and both workers (in this process, inference on a
 * worker thread) against a real redis-server and s3rver (or a bucket on the run's radosgw), started before a test file's tests and stopped
 * after them, with a small HTTP client and the documents the tests ingest.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { startApi, type ApiServer } from '../../api/server.js';
import { main } from '../../cli/main.js';
import {
  engineThreadInit,
  startEngineThread,
  type EngineThread,
} from '../../core/inference/engine-thread.js';
import { decodeManifest, manifestObjectKey, type DocumentManifest } from '../../core/documents/manifest.js';
import { openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { startPrecomputeWorker, type PrecomputeWorker } from '../../precompute/precompute-worker.js';
import { startBlendWorker, type BlendWorker } from '../../worker/blend-worker.js';
import { STORIES_DIR, STORY_SETS } from './models.js';
import { requestJson } from './http.js';
import { startRgw } from './rgw.js';
import { s3Options, serviceConfig, type TestServiceEnv } from './service.js';
import { startRedis, startS3, type RedisHandle, type S3Handle } from './services.js';

export const MAX_TOKENS = 16;
export const DOCS = STORY_SETS.slice(0, 3).map((set, i) => ({
  id: `story-${i}`,
  text: set.chunks.join('\n\n'),
}));
export const QUESTION = 'Lily threw the ball and the dog';

export interface Reply {
  status: number;
  body: Record<string, unknown> & {
    error?: { code: string; message: string; field?: string; jobId?: string };
  };
  text: string;
}

export interface E2eService {
  redisServer: RedisHandle;
  s3: S3Handle;
  env: TestServiceEnv;
  thread: EngineThread;
  api: ApiServer;
  /** A client of the service's object store. */
  store: ObjectStore;
  fingerprint: string;
  http(method: string, path: string, body?: unknown, raw?: string, base?: string): Promise<Reply>;
  /** A document's manifest, read from the object store. */
  manifest(id: string): Promise<DocumentManifest>;
  /** Stops both workers (the API keeps running). */
  closeWorkers(): Promise<void>;
}

/** The service for this test file; its fields are set once its beforeAll has run. */
export function useE2eService(options: { server?: S3Handle['server'] } = {}): E2eService {
  let precompute: PrecomputeWorker | undefined;
  let blend: BlendWorker | undefined;
  const svc = {} as E2eService;
  svc.http = (method, path, body, raw, base = svc.api.url) =>
    requestJson<Reply['body']>(`${base}${path}`, { method, body, raw });
  svc.manifest = async (id) => decodeManifest((await svc.store.get(manifestObjectKey(id)))!);
  svc.closeWorkers = async () => {
    await Promise.all([blend?.close(), precompute?.close()]);
    blend = precompute = undefined;
  };

  beforeAll(async () => {
    [svc.redisServer, svc.s3] = await Promise.all([
      startRedis(),
      options.server === 'radosgw' ? startRgw('e2e') : startS3(),
    ]);
    svc.env = await serviceConfig({
      redis: svc.redisServer,
      s3: svc.s3,
      label: 'e2e',
      env: { MAX_BODY_BYTES: '65536', CHUNK_TOKEN_BUDGET: '24' },
    });
    const { config } = svc.env;
    svc.thread = await startEngineThread(engineThreadInit(config, { threads: 1 }));
    [precompute, blend, svc.api] = await Promise.all([
      startPrecomputeWorker({ config, thread: svc.thread, reconcileMs: 0 }),
      startBlendWorker({ config, thread: svc.thread }),
      startApi({ config, port: 0 }),
    ]);
    svc.fingerprint = (await svc.api.modelReady).fingerprint;
    svc.store = openObjectStore(config.kvStoreUrl, { s3: s3Options(svc.s3) });
  });

  afterAll(async () => {
    await svc.closeWorkers();
    await svc.api?.close();
    await svc.thread?.terminate();
    await svc.store?.close();
    await Promise.all([svc.redisServer?.stop(), svc.s3?.stop(), svc.env?.cleanup()]);
  });
  return svc;
}

/** The answer of `cacheblend generate` for these chunks and QUESTION (the CLI's in-process reference). */
export async function cli(
  chunks: string[],
  mode: string,
): Promise<{ text: string; generatedTokens: number[] }> {
  let out = '';
  const code = await main(
    [
      'generate',
      '--model',
      STORIES_DIR,
      ...chunks.flatMap((c) => ['--chunk', c]),
      '--question',
      QUESTION,
      '--mode',
      mode,
      '--max-tokens',
      String(MAX_TOKENS),
      '--json',
    ],
    (s) => (out += s),
  );
  expect(code).toBe(0);
  return JSON.parse(out);
}
