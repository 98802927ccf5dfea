import os from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { BENCH_VARIABLES, loadBenchSettings } from '../../core/config/bench.js';
import { CONFIG_VARIABLES, loadConfig, redactConfig } from '../../core/config/index.js';
import { ConfigError } from '../../core/errors.js';
import { projectRoot } from '../../core/util/fs.js';

const cwd = '/srv/app';
const load = (env: Record<string, string | undefined> = {}) => loadConfig(env, { cwd });

function errorFor(env: Record<string, string | undefined>): ConfigError {
  try {
    load(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected ConfigError for ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('has documented defaults', () => {
    const c = load();
    expect(c).toEqual({
      port: 8080,
      host: '127.0.0.1',
      dataDir: '/srv/app/.data',
      redisUrl: 'redis://127.0.0.1:6379',
      redisUrlDefaulted: true,
      kvStoreUrl: 'file:///srv/app/.data/kv',
      s3: { region: 'us-east-1', forcePathStyle: true },
      model: 'stories260K',
      modelSource: {
        searchPath: [path.join(projectRoot(), 'models'), '/srv/app/.data/models'],
        cacheDir: path.join(os.homedir(), '.cache', 'huggingface', 'hub'),
        allowDownload: false,
        endpoint: 'https://huggingface.co',
      },
      executionProvider: 'cpu',
      gpuIndex: null,
      kvDtype: 'float16',
      lruBytes: 256 * 1024 * 1024,
      gpuTierBytes: 'auto',
      deviceDtype: 'float16',
      weights: 'auto',
      deviceDecodeBurst: 8,
      diskCacheDir: '/srv/app/.data/disk-cache',
      chunkTokenBudget: 256,
      queryTimeoutMs: 60_000,
      maxBodyBytes: 1024 * 1024,
      queuePrefix: 'cacheblend',
      blendConcurrency: 1,
      blendMinRatio: 0.15,
      calibrationGate: 'report',
      precomputeConcurrency: 2,
      logLevel: 'info',
      metricsPort: null,
      redisServerBin: 'redis-server',
      redisClusterNodes: [],
      redisRequireDurable: true,
      apiKeys: [],
      metricsToken: null,
      shareChunkCache: false,
      queryQueueLimit: 64,
      maxQueryChunks: 20_000,
      rateLimitPerMinute: 0,
      diskCacheBytes: 2 * 1024 ** 3,
      jobLockMs: 30_000,
      precomputeAttempts: 12,
      reconcileIntervalMs: 30_000,
      jobHistory: { completed: { count: 10_000, age: 3_600 }, failed: { count: 10_000, age: 604_800 } },
    });
  });

  it('reads every variable', () => {
    const c = load({
      PORT: '9000',
      HOST: '0.0.0.0',
      DATA_DIR: '/var/lib/cb',
      REDIS_URL: 'redis://redis:6379/2',
      KV_STORE_URL: 's3://cacheblend/kv',
      S3_ENDPOINT: 'http://minio:9000',
      S3_REGION: 'eu-west-1',
      S3_ACCESS_KEY_ID: 'AKID',
      S3_SECRET_ACCESS_KEY: 'SECRET',
      S3_FORCE_PATH_STYLE: 'false',
      MODEL: 'Qwen/Qwen2.5-0.5B-Instruct',
      CACHEBLEND_MODEL_PATH: '/models:rel/models::',
      CACHEBLEND_MODEL_CACHE: 'hub-cache',
      CACHEBLEND_ALLOW_DOWNLOAD: '1',
      HF_ENDPOINT: 'https://hf-mirror.example/',
      HF_TOKEN: 'hf_secret',
      EXECUTION_PROVIDER: 'cuda',
      KV_DTYPE: 'float32',
      LRU_BYTES: '1024',
      DISK_CACHE_DIR: 'cache',
      CHUNK_TOKEN_BUDGET: '512',
      QUERY_TIMEOUT_MS: '1000',
      MAX_BODY_BYTES: '2048',
      QUEUE_PREFIX: 'cb-test',
      BLEND_CONCURRENCY: '4',
      BLEND_MIN_RATIO: '0.3',
      PRECOMPUTE_CONCURRENCY: '2',
      LOG_LEVEL: 'debug',
      METRICS_PORT: '9100',
      REDIS_SERVER_BIN: '/opt/redis/bin/redis-server',
      REDIS_CLUSTER_NODES: '10.0.0.1:7000,redis-b:7001',
      REDIS_REQUIRE_DURABLE: 'false',
      API_KEYS: 'acme:acme-key-0123456789abcdef,globex:globex_key_0123456789',
      METRICS_TOKEN: 'metrics-token-0123456789',
      SHARE_CHUNK_CACHE: 'true',
      QUERY_QUEUE_LIMIT: '10',
      MAX_QUERY_CHUNKS: '500',
      RATE_LIMIT_PER_MINUTE: '600',
      DISK_CACHE_BYTES: '1048576',
      JOB_LOCK_MS: '5000',
      PRECOMPUTE_ATTEMPTS: '3',
      RECONCILE_INTERVAL_MS: '0',
    });
    expect(c).toMatchObject({
      port: 9000,
      host: '0.0.0.0',
      dataDir: '/var/lib/cb',
      redisUrl: 'redis://redis:6379/2',
      redisUrlDefaulted: false,
      kvStoreUrl: 's3://cacheblend/kv',
      s3: {
        endpoint: 'http://minio:9000',
        region: 'eu-west-1',
        accessKeyId: 'AKID',
        secretAccessKey: 'SECRET',
        forcePathStyle: false,
      },
      model: 'Qwen/Qwen2.5-0.5B-Instruct',
      modelSource: {
        searchPath: ['/models', '/srv/app/rel/models'],
        cacheDir: '/srv/app/hub-cache',
        allowDownload: true,
        endpoint: 'https://hf-mirror.example',
        token: 'hf_secret',
      },
      executionProvider: 'cuda',
      kvDtype: 'float32',
      lruBytes: 1024,
      diskCacheDir: '/srv/app/cache',
      chunkTokenBudget: 512,
      queryTimeoutMs: 1000,
      maxBodyBytes: 2048,
      queuePrefix: 'cb-test',
      blendConcurrency: 4,
      blendMinRatio: 0.3,
      precomputeConcurrency: 2,
      logLevel: 'debug',
      metricsPort: 9100,
      redisServerBin: '/opt/redis/bin/redis-server',
      redisClusterNodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: 'redis-b', port: 7001 },
      ],
      redisRequireDurable: false,
      apiKeys: [
        { tenant: 'acme', key: 'acme-key-0123456789abcdef' },
        { tenant: 'globex', key: 'globex_key_0123456789' },
      ],
      metricsToken: 'metrics-token-0123456789',
      shareChunkCache: true,
      queryQueueLimit: 10,
      maxQueryChunks: 500,
      rateLimitPerMinute: 600,
      diskCacheBytes: 1048576,
      jobLockMs: 5000,
      precomputeAttempts: 3,
      reconcileIntervalMs: 0,
      jobHistory: { completed: { count: 10_000, age: 3_600 }, failed: { count: 10_000, age: 604_800 } },
    });
  });

  it('refuses malformed API keys and cluster nodes, never echoing a key', () => {
    for (const bad of ['acme', 'acme:short', 'a b:0123456789abcdefgh', 'acme:0123456789abcdefgh,']) {
      const err = errorFor({ API_KEYS: bad });
      expect(err.message).toContain('API_KEYS');
      expect(err.message).not.toContain('0123456789abcdefgh');
    }
    expect(errorFor({ API_KEYS: 'a:0123456789abcdefgh,b:0123456789abcdefgh' }).message).toContain('twice');
    expect(errorFor({ REDIS_CLUSTER_NODES: 'host' }).message).toContain('REDIS_CLUSTER_NODES');
    expect(errorFor({ REDIS_CLUSTER_NODES: 'host:0' }).message).toContain('REDIS_CLUSTER_NODES');
    expect(errorFor({ METRICS_TOKEN: 'short' }).message).toContain('METRICS_TOKEN');
  });

  it('redacts API keys and the metrics token for logging', () => {
    const c = load({ API_KEYS: 'acme:acme-key-0123456789abcdef', METRICS_TOKEN: 'metrics-token-0123456789' });
    const text = JSON.stringify(redactConfig(c));
    expect(text).toContain('acme');
    expect(text).not.toContain('acme-key-0123456789abcdef');
    expect(text).not.toContain('metrics-token-0123456789');
  });

  it('derives the KV store and caches from DATA_DIR', () => {
    const c = load({ DATA_DIR: 'state' });
    expect(c.dataDir).toBe('/srv/app/state');
    expect(c.kvStoreUrl).toBe('file:///srv/app/state/kv');
    expect(c.diskCacheDir).toBe('/srv/app/state/disk-cache');
    expect(c.modelSource.searchPath).toEqual([path.join(projectRoot(), 'models'), '/srv/app/state/models']);
  });

  it('makes relative file:// store URLs absolute and keeps others', () => {
    expect(load({ KV_STORE_URL: 'file://./kv' }).kvStoreUrl).toBe('file:///srv/app/kv');
    expect(load({ KV_STORE_URL: 'file:///abs/kv' }).kvStoreUrl).toBe('file:///abs/kv');
    expect(load({ KV_STORE_URL: 'memory://' }).kvStoreUrl).toBe('memory://');
    expect(load({ KV_STORE_URL: 'memory://shared' }).kvStoreUrl).toBe('memory://shared');
  });

  it('treats empty and blank variables as unset', () => {
    const c = load({ PORT: '', REDIS_URL: '  ', S3_ENDPOINT: '' });
    expect(c.port).toBe(8080);
    expect(c.redisUrlDefaulted).toBe(true);
    expect(c.s3.endpoint).toBeUndefined();
  });

  it('is deeply frozen', () => {
    const c = load();
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.s3)).toBe(true);
    expect(Object.isFrozen(c.modelSource)).toBe(true);
    expect(Object.isFrozen(c.modelSource.searchPath)).toBe(true);
    expect(() => {
      (c as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '80.5'],
    ['PORT', '-1'],
    ['PORT', '65536'],
    ['PORT', '0x50'],
    ['PORT', '1e3'],
    ['LRU_BYTES', '256MiB'],
    ['CHUNK_TOKEN_BUDGET', '0'],
    ['QUERY_TIMEOUT_MS', 'soon'],
    ['MAX_BODY_BYTES', '0'],
    ['BLEND_CONCURRENCY', '0'],
    ['BLEND_MIN_RATIO', '1.5'],
    ['BLEND_MIN_RATIO', 'auto'],
    ['PRECOMPUTE_CONCURRENCY', 'two'],
    ['S3_FORCE_PATH_STYLE', 'yes'],
    ['S3_FORCE_PATH_STYLE', 'TRUE '],
    ['EXECUTION_PROVIDER', 'tpu'],
    ['KV_DTYPE', 'bfloat16'],
    ['LOG_LEVEL', 'loud'],
    ['REDIS_URL', 'http://localhost:6379'],
    ['REDIS_URL', 'not a url'],
    ['KV_STORE_URL', 'ftp://x/y'],
    ['KV_STORE_URL', 's3://'],
    ['KV_STORE_URL', 's3://Bad_Bucket'],
    ['S3_ENDPOINT', 'minio:9000'],
    ['QUEUE_PREFIX', 'has space'],
    ['QUEUE_PREFIX', 'a:b'],
    ['MODEL', 'two words'],
  ])('rejects %s=%j naming the variable', (name, value) => {
    const err = errorFor({ [name]: value });
    expect(err.code).toBe('CONFIG');
    expect(err.message).toContain(name);
  });

  it('reports every bad variable at once', () => {
    const err = errorFor({ PORT: 'abc', KV_DTYPE: 'int4' });
    expect(err.message).toContain('PORT');
    expect(err.message).toContain('KV_DTYPE');
    expect(err.message).toContain('"abc"');
  });

  it('parses booleans strictly', () => {
    expect(load({ S3_FORCE_PATH_STYLE: 'true' }).s3.forcePathStyle).toBe(true);
    expect(load({ S3_FORCE_PATH_STYLE: '1' }).s3.forcePathStyle).toBe(true);
    expect(load({ S3_FORCE_PATH_STYLE: 'false' }).s3.forcePathStyle).toBe(false);
    expect(load({ S3_FORCE_PATH_STYLE: '0' }).s3.forcePathStyle).toBe(false);
  });

  it('accepts port 0 (ephemeral) and large byte budgets', () => {
    expect(load({ PORT: '0' }).port).toBe(0);
    expect(load({ LRU_BYTES: String(64 * 1024 ** 3) }).lruBytes).toBe(64 * 1024 ** 3);
  });

  it('needs both S3 credentials or neither', () => {
    expect(errorFor({ S3_ACCESS_KEY_ID: 'AKID' }).message).toContain('S3_SECRET_ACCESS_KEY');
    expect(errorFor({ S3_SECRET_ACCESS_KEY: 'x' }).message).toContain('S3_ACCESS_KEY_ID');
  });

  it('never echoes secret values in errors', () => {
    const err = errorFor({ REDIS_URL: 'http://user:hunter2@host' });
    expect(err.message).toContain('REDIS_URL');
    expect(err.message).not.toContain('hunter2');
  });

  it('rejects a bad METRICS_PORT and HF_ENDPOINT, naming them', () => {
    expect(errorFor({ METRICS_PORT: '70000' }).message).toContain('METRICS_PORT');
    expect(errorFor({ HF_ENDPOINT: 'ftp://hub' }).message).toContain('HF_ENDPOINT');
    expect(errorFor({ CACHEBLEND_ALLOW_DOWNLOAD: 'yes' }).message).toContain('CACHEBLEND_ALLOW_DOWNLOAD');
  });

  it('rejects a model path with no directories', () => {
    expect(errorFor({ CACHEBLEND_MODEL_PATH: ':::' }).message).toContain('CACHEBLEND_MODEL_PATH');
  });

  it('redacts secrets for logging', () => {
    const c = load({
      REDIS_URL: 'redis://:pw@redis:6379',
      S3_ACCESS_KEY_ID: 'AKID',
      S3_SECRET_ACCESS_KEY: 'SECRET',
      HF_TOKEN: 'hf_TOKENVALUE',
    });
    const text = JSON.stringify(redactConfig(c));
    expect(text).not.toContain('TOKENVALUE');
    expect(text).not.toContain('SECRET');
    expect(text).not.toContain('AKID');
    expect(text).not.toContain(':pw@');
  });

  it('reads process.env by default and lists its variables', () => {
    vi.stubEnv('PORT', '1234');
    vi.stubEnv('MODEL', 'from-env');
    try {
      expect(loadConfig()).toMatchObject({ port: 1234, model: 'from-env' });
    } finally {
      vi.unstubAllEnvs();
    }
    expect(CONFIG_VARIABLES).toContain('CACHEBLEND_MODEL_PATH');
    expect(CONFIG_VARIABLES).toHaveLength(55);
  });

  it('documents every variable in the configuration tables (docs/configuration.md)', () => {
    const table = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    for (const name of [...CONFIG_VARIABLES, ...BENCH_VARIABLES])
      expect(table, name).toContain(`\`${name}\``);
  });
});

describe('loadBenchSettings', () => {
  it('has defaults, parses contexts, and names a bad variable', () => {
    const d = loadBenchSettings({});
    expect(d).toMatchObject({ executionProvider: 'cpu', reps: 3 });
    expect(d.storiesDir).toBe(path.join(projectRoot(), 'models', 'stories260K'));
    expect(loadBenchSettings({ BENCH_CONTEXTS: '2x64,8x512' }).contexts).toEqual([
      { chunks: 2, tokens: 64 },
      { chunks: 8, tokens: 512 },
    ]);
    expect(() => loadBenchSettings({ BENCH_REPS: '0' })).toThrow(/BENCH_REPS/);
    expect(() => loadBenchSettings({ ORT_EP: 'tpu' })).toThrow(/ORT_EP/);
    expect(() => loadBenchSettings({ BENCH_CONTEXTS: '4by512' })).toThrow(/BENCH_CONTEXTS/);
    expect(loadBenchSettings({ BENCH_SCALE_WEIGHTS: 'q4' }).scaleWeights).toEqual(['q4']);
    expect(() => loadBenchSettings({ BENCH_SCALE_SHAPES: '70B' })).toThrow(/BENCH_SCALE_SHAPES/);
    expect(() => loadBenchSettings({ BENCH_WEIGHTS: 'int8' })).toThrow(/BENCH_WEIGHTS/);
  });

  it('WEIGHTS: auto by default, a format, or a clear error', () => {
    expect(loadConfig({}).weights).toBe('auto');
    expect(loadConfig({ WEIGHTS: 'q4' }).weights).toBe('q4');
    expect(() => loadConfig({ WEIGHTS: 'int3' })).toThrow(/WEIGHTS/);
  });
});
