/**
 * Service configuration for tests: a real Redis and s3rver (from services.ts), the real stories260K model
 * read in place, and unique Redis/S3 prefixes so tests never see each other's keys or objects.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../core/config/index.js';
import { engineThreadInit } from '../../core/inference/engine-thread.js';
import type { EngineThreadInit } from '../../core/inference/engine-handlers.js';
import { STORIES_DIR } from './models.js';
import { uniquePrefix, type RedisClusterHandle, type RedisHandle, type S3Handle } from './services.js';

export function s3Options(s3: S3Handle) {
  return {
    endpoint: s3.endpoint,
    region: s3.region,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    forcePathStyle: true,
  };
}

/** A unique id usable as QUEUE_PREFIX and as an S3 key prefix. */
export function uniqueName(label: string): string {
  return uniquePrefix(label).replace(/\/$/, '');
}

export interface TestServiceEnv {
  config: Config;
  /** The environment the config was read from (to start the same service as a child process). */
  vars: Record<string, string>;
  dataDir: string;
  cleanup(): Promise<void>;
}

export async function serviceConfig(opts: {
  /** One Redis, or (instead) a Redis Cluster. */
  redis?: RedisHandle;
  cluster?: RedisClusterHandle;
  s3?: S3Handle;
  label: string;
  env?: Record<string, string>;
}): Promise<TestServiceEnv> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-svc-'));
  const name = uniqueName(opts.label);
  const env: Record<string, string> = {
    ...(opts.redis && { REDIS_URL: opts.redis.url }),
    ...(opts.cluster && { REDIS_CLUSTER_NODES: opts.cluster.clusterNodes }),
    DATA_DIR: dataDir,
    MODEL: STORIES_DIR,
    QUEUE_PREFIX: name,
    LOG_LEVEL: 'silent',
    CHUNK_TOKEN_BUDGET: '24',
    ...(opts.s3
      ? {
          KV_STORE_URL: `s3://${opts.s3.bucket}/${name}`,
          S3_ENDPOINT: opts.s3.endpoint,
          S3_ACCESS_KEY_ID: opts.s3.accessKeyId,
          S3_SECRET_ACCESS_KEY: opts.s3.secretAccessKey,
          S3_REGION: opts.s3.region,
        }
      : {}),
    ...opts.env,
  };
  return {
    config: loadConfig(env),
    vars: env,
    dataDir,
    cleanup: () => rm(dataDir, { recursive: true, force: true }),
  };
}

export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs = 30_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * An inference thread's settings for tests that start one directly: the service's defaults
 * (engineThreadInit over a config of no variables) with one thread, stories260K, a private memory store,
 * no disk tier and no LRU, silent — each overridable.
 */
export function testEngineInit(overrides: Partial<EngineThreadInit> = {}): EngineThreadInit {
  return engineThreadInit(loadConfig({ LOG_LEVEL: 'silent' }), {
    model: STORIES_DIR,
    threads: 1,
    kvStoreUrl: 'memory://',
    diskCacheDir: null,
    lruBytes: 0,
    kvDtype: 'float16',
    chunkWrites: null,
    ...overrides,
  });
}
