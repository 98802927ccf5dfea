/**
 * Service configuration: every setting comes from an environment variable, is parsed once with zod into
 * a deeply frozen object, and a bad value fails fast with a ConfigError naming the variable. Empty
 * variables count as unset (so `FOO=` in a compose file means "use the default"). The CLI's setting flags
 * (cli/service-flags.ts) are these variables under flag names, checked by this same schema.
 *
 * | Variable                | Default                                   | Notes                                   |
 * | ----------------------- | ----------------------------------------- | --------------------------------------- |
 * | PORT                    | 8080                                      | 0..65535                                |
 * | HOST                    | 127.0.0.1                                 | loopback only by default; containers set 0.0.0.0 |
 * | DATA_DIR                | ./.data                                   | resolved to an absolute path            |
 * | REDIS_URL               | redis://127.0.0.1:6379                    | `redisUrlDefaulted` tells whether unset |
 * | KV_STORE_URL            | file://<DATA_DIR>/kv                      | memory://, file://, s3://bucket/prefix  |
 * | S3_ENDPOINT             | (AWS)                                     | http(s) URL, e.g. http://minio:9000     |
 * | S3_REGION               | us-east-1                                 |                                         |
 * | S3_ACCESS_KEY_ID        | (SDK default chain)                       | set both or neither                     |
 * | S3_SECRET_ACCESS_KEY    | (SDK default chain)                       |                                         |
 * | S3_FORCE_PATH_STYLE     | true                                      | true/false/1/0                          |
 * | MODEL                   | stories260K                               |                                         |
 * | CACHEBLEND_MODEL_PATH   | <repo>/models:<DATA_DIR>/models           | ':'-separated, relative to cwd          |
 * | CACHEBLEND_MODEL_CACHE  | the Hugging Face cache (HF_HUB_CACHE)     | Hub cache: found and downloaded models  |
 * | HF_HUB_CACHE            | <HF_HOME>/hub                             | as huggingface_hub reads it             |
 * | HF_HOME                 | ~/.cache/huggingface                      |                                         |
 * | CACHEBLEND_ALLOW_DOWNLOAD | false                                   | true/1: fetch unknown names from the Hub |
 * | CACHEBLEND_WEIGHT_CACHE | <checkpoint>/.cacheblend, else ~/.cache   | load cache root, or off                 |
 * | HF_ENDPOINT             | https://huggingface.co                    | Hub base URL                            |
 * | HF_TOKEN                | (none)                                    | Hub token for gated repos (secret)      |
 * | EXECUTION_PROVIDER      | cpu                                       | cpu, webgpu, cuda                       |
 * | GPU_INDEX               | (none: the provider's default GPU)        | GPU in PCI order (nvidia-smi's index)   |
 * | KV_DTYPE                | float16                                   | float16, float32, int8                  |
 * | LRU_BYTES               | 268435456 (256 MiB)                       | plain integer bytes                     |
 * | GPU_TIER_BYTES          | auto (the card's free memory, less a reserve) | chunk caches kept in GPU memory (webgpu) |
 * | DEVICE_DTYPE            | float16                                   | float16, float32 (webgpu compute)       |
 * | WEIGHTS                 | auto                                      | auto, fp32, fp16, q4, q8 (linear layers) |
 * | DEVICE_DECODE_BURST     | 8                                         | greedy tokens per device run (1: off)   |
 * | DISK_CACHE_DIR          | <DATA_DIR>/disk-cache                     |                                         |
 * | CHUNK_TOKEN_BUDGET      | 256                                       |                                         |
 * | QUERY_TIMEOUT_MS        | 60000                                     |                                         |
 * | MAX_BODY_BYTES          | 1048576 (1 MiB)                           |                                         |
 * | QUEUE_PREFIX            | cacheblend                                | BullMQ key prefix                       |
 * | BLEND_CONCURRENCY       | 1                                         |                                         |
 * | BLEND_MIN_RATIO         | 0.15                                      | r_min of `ratio: "auto"`, in [0, 1]     |
 * | CALIBRATION_GATE        | report                                    | full: blend runs full for a flagged model |
 * | PRECOMPUTE_CONCURRENCY  | 2                                         |                                         |
 * | LOG_LEVEL               | info                                      | trace, debug, info, warn, error, silent |
 * | METRICS_PORT            | (none)                                    | a worker started alone serves /metrics  |
 * | REDIS_SERVER_BIN        | redis-server                              | binary the embedded launcher starts     |
 * | REDIS_CLUSTER_NODES     | (none)                                    | host:port,… seeds: use Redis Cluster    |
 * | REDIS_REQUIRE_DURABLE   | true                                      | refuse a Redis without persistence/noeviction |
 * | API_KEYS                | (none: open)                              | tenant:key,… Bearer keys (secret)       |
 * | METRICS_TOKEN           | (none)                                    | Bearer token for the API's /metrics     |
 * | SHARE_CHUNK_CACHE       | false                                     | tenants share chunk caches (no salt)    |
 * | QUERY_QUEUE_LIMIT       | 64                                        | waiting queries before 429              |
 * | MAX_QUERY_CHUNKS        | 20000                                     | chunks a query's documents may hold     |
 * | RATE_LIMIT_PER_MINUTE   | 0 (off)                                   | requests per key per minute on /v1      |
 * | DISK_CACHE_BYTES        | 2147483648 (2 GiB)                        | disk tier bound (0: no disk tier)       |
 * | JOB_LOCK_MS             | 30000                                     | a dead worker's job is retried after this |
 * | PRECOMPUTE_ATTEMPTS     | 12                                        | tries per chunk, backoff 1 s doubling to 60 s |
 * | RECONCILE_INTERVAL_MS   | 30000                                     | reconciler period (0: off)              |
 * | JOBS_KEEP_COMPLETED     | 10000                                     | completed jobs kept per queue           |
 * | JOBS_KEEP_COMPLETED_S   | 3600 (1 hour)                             | … and for at most this many seconds     |
 * | JOBS_KEEP_FAILED        | 10000                                     | failed jobs kept per queue              |
 * | JOBS_KEEP_FAILED_S      | 604800 (7 days)                           | … and for at most this many seconds     |
 */
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { hfHubCache, projectRoot } from '../util/fs.js';

export * from './types.js';
import type {
  ApiKey,
  Config,
  JobHistory,
  LoadConfigOptions,
  ModelSourceSettings,
  RedisNode,
  S3Settings,
} from './types.js';

const SECRET_VARS = new Set([
  'S3_SECRET_ACCESS_KEY',
  'S3_ACCESS_KEY_ID',
  'REDIS_URL',
  'KV_STORE_URL',
  'HF_TOKEN',
  'API_KEYS',
  'METRICS_TOKEN',
]);

const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `must be an integer between ${min} and ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const int = (min: number, max: number, fallback: number) => integer(min, max).default(fallback);

const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0'], { error: 'must be one of true, false, 1, 0' })
    .transform((v) => v === 'true' || v === '1')
    .default(fallback);

const oneOf = <const T extends readonly [string, ...string[]]>(values: T, fallback: T[number]) =>
  z.enum(values, { error: `must be one of ${values.join(', ')}` }).default(fallback);

const urlWithProtocols = (protocols: string[], what: string) =>
  z.string().refine(
    (v) => {
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    { error: `must be a ${what} URL (${protocols.map((p) => `${p}//`).join(' or ')})` },
  );

const noSpaces = z.string().regex(/^\S+$/, 'must not contain whitespace');
const MAX = Number.MAX_SAFE_INTEGER;

/** The job history kept by default: failures (what an operator looks into) a week, successes an hour. */
export const DEFAULT_JOB_HISTORY: JobHistory = Object.freeze({
  completed: Object.freeze({ count: 10_000, age: 3_600 }),
  failed: Object.freeze({ count: 10_000, age: 7 * 24 * 3_600 }),
});

const EnvSchema = z.object({
  PORT: int(0, 65535, 8080),
  HOST: noSpaces.default('127.0.0.1'),
  DATA_DIR: z.string().default('./.data'),
  REDIS_URL: urlWithProtocols(['redis:', 'rediss:'], 'Redis').optional(),
  KV_STORE_URL: z
    .string()
    .regex(
      /^(memory:\/\/[A-Za-z0-9._-]*|file:\/\/.+|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?)$/,
      'must be memory://[name], file:///abs/dir, file://./rel/dir or s3://bucket[/prefix]',
    )
    .optional(),
  S3_ENDPOINT: urlWithProtocols(['http:', 'https:'], 'http(s)').optional(),
  S3_REGION: noSpaces.default('us-east-1'),
  S3_ACCESS_KEY_ID: z.string().optional(),
  S3_SECRET_ACCESS_KEY: z.string().optional(),
  S3_FORCE_PATH_STYLE: bool(true),
  MODEL: noSpaces.default('stories260K'),
  CACHEBLEND_MODEL_PATH: z.string().optional(),
  CACHEBLEND_MODEL_CACHE: z.string().optional(),
  CACHEBLEND_ALLOW_DOWNLOAD: bool(false),
  CACHEBLEND_WEIGHT_CACHE: z.string().optional(),
  HF_ENDPOINT: urlWithProtocols(['http:', 'https:'], 'http(s)').default('https://huggingface.co'),
  HF_TOKEN: z.string().optional(),
  HF_HOME: z.string().optional(),
  HF_HUB_CACHE: z.string().optional(),
  EXECUTION_PROVIDER: oneOf(['cpu', 'webgpu', 'cuda'], 'cpu'),
  GPU_INDEX: integer(0, 255).optional(),
  KV_DTYPE: oneOf(['float16', 'float32', 'int8'], 'float16'),
  LRU_BYTES: int(0, MAX, 256 * 1024 * 1024),
  GPU_TIER_BYTES: z
    .union([z.literal('auto'), integer(0, MAX)], { error: `must be auto or an integer between 0 and ${MAX}` })
    .default('auto'),
  DEVICE_DTYPE: oneOf(['float16', 'float32'], 'float16'),
  WEIGHTS: oneOf(['auto', 'fp32', 'fp16', 'q4', 'q8'], 'auto'),
  DEVICE_DECODE_BURST: int(1, 64, 8),
  DISK_CACHE_DIR: z.string().optional(),
  CHUNK_TOKEN_BUDGET: int(1, 1_000_000, 256),
  QUERY_TIMEOUT_MS: int(1, 24 * 60 * 60 * 1000, 60_000),
  MAX_BODY_BYTES: int(1, MAX, 1024 * 1024),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 characters from A-Z a-z 0-9 _ . -')
    .default('cacheblend'),
  BLEND_CONCURRENCY: int(1, 1024, 1),
  BLEND_MIN_RATIO: z
    .string()
    .regex(/^(0(\.\d+)?|1(\.0+)?)$/, 'must be a number in [0, 1]')
    .transform(Number)
    .default(0.15),
  CALIBRATION_GATE: oneOf(['report', 'full'], 'report'),
  PRECOMPUTE_CONCURRENCY: int(1, 1024, 2),
  LOG_LEVEL: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'silent'], 'info'),
  METRICS_PORT: integer(0, 65535).optional(),
  REDIS_SERVER_BIN: z.string().default('redis-server'),
  REDIS_CLUSTER_NODES: z
    .string()
    .regex(/^[^\s,:]+:\d{1,5}(,[^\s,:]+:\d{1,5})*$/, 'must be host:port[,host:port…]')
    .optional(),
  REDIS_REQUIRE_DURABLE: bool(true),
  API_KEYS: z
    .string()
    .regex(
      /^[A-Za-z0-9_-]{1,64}:[^\s,:]{16,256}(,[A-Za-z0-9_-]{1,64}:[^\s,:]{16,256})*$/,
      'must be tenant:key[,tenant:key…] (tenants: A-Z a-z 0-9 _ -; keys: 16-256 characters, no spaces, commas or colons)',
    )
    .optional(),
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  SHARE_CHUNK_CACHE: bool(false),
  QUERY_QUEUE_LIMIT: int(1, 1_000_000, 64),
  MAX_QUERY_CHUNKS: int(1, 10_000_000, 20_000),
  RATE_LIMIT_PER_MINUTE: int(0, 1_000_000_000, 0),
  DISK_CACHE_BYTES: int(0, MAX, 2 * 1024 ** 3),
  JOB_LOCK_MS: int(1_000, 3_600_000, 30_000),
  PRECOMPUTE_ATTEMPTS: int(1, 100, 12),
  RECONCILE_INTERVAL_MS: int(0, 24 * 60 * 60 * 1000, 30_000),
  JOBS_KEEP_COMPLETED: int(0, 10_000_000, DEFAULT_JOB_HISTORY.completed.count),
  JOBS_KEEP_COMPLETED_S: int(0, 365 * 24 * 3_600, DEFAULT_JOB_HISTORY.completed.age),
  JOBS_KEEP_FAILED: int(0, 10_000_000, DEFAULT_JOB_HISTORY.failed.count),
  JOBS_KEEP_FAILED_S: int(0, 365 * 24 * 3_600, DEFAULT_JOB_HISTORY.failed.age),
});

/** Names of all variables read by loadConfig. */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze(Object.keys(EnvSchema.shape));

/**
 * Parses the configuration from `env` (default process.env). Throws ConfigError naming the offending
 * variable(s). The result is deeply frozen.
 */
export function loadConfig(
  env: Record<string, string | undefined> = process.env,
  options: LoadConfigOptions = {},
): Config {
  const cwd = options.cwd ?? process.cwd();
  const e = parseEnv(env, options.label ?? ((name) => name));
  const dataDir = path.resolve(cwd, e.DATA_DIR);
  const config: Config = {
    port: e.PORT,
    host: e.HOST,
    dataDir,
    redisUrl: e.REDIS_URL ?? 'redis://127.0.0.1:6379',
    redisUrlDefaulted: e.REDIS_URL === undefined,
    kvStoreUrl: absoluteFileUrl(e.KV_STORE_URL ?? `file://${path.join(dataDir, 'kv')}`, cwd),
    s3: s3Settings(e),
    model: e.MODEL,
    modelSource: modelSourceSettings(e, cwd, dataDir),
    executionProvider: e.EXECUTION_PROVIDER,
    gpuIndex: e.GPU_INDEX ?? null,
    kvDtype: e.KV_DTYPE,
    lruBytes: e.LRU_BYTES,
    gpuTierBytes: e.GPU_TIER_BYTES,
    deviceDtype: e.DEVICE_DTYPE,
    weights: e.WEIGHTS,
    deviceDecodeBurst: e.DEVICE_DECODE_BURST,
    diskCacheDir: path.resolve(cwd, e.DISK_CACHE_DIR ?? path.join(dataDir, 'disk-cache')),
    chunkTokenBudget: e.CHUNK_TOKEN_BUDGET,
    queryTimeoutMs: e.QUERY_TIMEOUT_MS,
    maxBodyBytes: e.MAX_BODY_BYTES,
    queuePrefix: e.QUEUE_PREFIX,
    blendConcurrency: e.BLEND_CONCURRENCY,
    blendMinRatio: e.BLEND_MIN_RATIO,
    calibrationGate: e.CALIBRATION_GATE,
    precomputeConcurrency: e.PRECOMPUTE_CONCURRENCY,
    logLevel: e.LOG_LEVEL,
    metricsPort: e.METRICS_PORT ?? null,
    redisServerBin: e.REDIS_SERVER_BIN,
    redisClusterNodes: Object.freeze(clusterNodes(e.REDIS_CLUSTER_NODES)),
    redisRequireDurable: e.REDIS_REQUIRE_DURABLE,
    apiKeys: Object.freeze(apiKeys(e.API_KEYS)),
    metricsToken: e.METRICS_TOKEN ?? null,
    shareChunkCache: e.SHARE_CHUNK_CACHE,
    queryQueueLimit: e.QUERY_QUEUE_LIMIT,
    maxQueryChunks: e.MAX_QUERY_CHUNKS,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    diskCacheBytes: e.DISK_CACHE_BYTES,
    jobLockMs: e.JOB_LOCK_MS,
    precomputeAttempts: e.PRECOMPUTE_ATTEMPTS,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    jobHistory: Object.freeze({
      completed: Object.freeze({ count: e.JOBS_KEEP_COMPLETED, age: e.JOBS_KEEP_COMPLETED_S }),
      failed: Object.freeze({ count: e.JOBS_KEEP_FAILED, age: e.JOBS_KEEP_FAILED_S }),
    }),
  };
  return Object.freeze(config);
}

type Env = z.infer<typeof EnvSchema>;

/** Validate the variables (empty counts as unset); ConfigError names each bad one, never a secret's value. */
function parseEnv(env: Record<string, string | undefined>, label: (name: string) => string): Env {
  const raw: Record<string, string | undefined> = {};
  for (const name of CONFIG_VARIABLES) {
    const value = env[name];
    raw[name] = value === undefined || value.trim() === '' ? undefined : value.trim();
  }
  const parsed = EnvSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? '?');
      const value = raw[name];
      const shown = value === undefined || SECRET_VARS.has(name) ? '' : ` (got ${JSON.stringify(value)})`;
      return `${label(name)} ${issue.message}${shown}`;
    });
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  return parsed.data;
}

function clusterNodes(list: string | undefined): RedisNode[] {
  if (list === undefined) return [];
  return list.split(',').map((entry) => {
    const at = entry.lastIndexOf(':');
    const port = Number(entry.slice(at + 1));
    if (port < 1 || port > 65535) {
      throw new ConfigError(`invalid configuration: REDIS_CLUSTER_NODES has a bad port in ${entry}`);
    }
    return Object.freeze({ host: entry.slice(0, at), port });
  });
}

/** `tenant:key,…` → entries; a key given twice (to one tenant or two) is refused. */
function apiKeys(list: string | undefined): ApiKey[] {
  if (list === undefined) return [];
  const seen = new Set<string>();
  return list.split(',').map((entry) => {
    const at = entry.indexOf(':');
    const key = entry.slice(at + 1);
    if (seen.has(key)) throw new ConfigError('invalid configuration: API_KEYS lists one key twice');
    seen.add(key);
    return Object.freeze({ tenant: entry.slice(0, at), key });
  });
}

function s3Settings(e: Env): S3Settings {
  if ((e.S3_ACCESS_KEY_ID === undefined) !== (e.S3_SECRET_ACCESS_KEY === undefined)) {
    const [missing, given] =
      e.S3_ACCESS_KEY_ID === undefined
        ? ['S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY']
        : ['S3_SECRET_ACCESS_KEY', 'S3_ACCESS_KEY_ID'];
    throw new ConfigError(`invalid configuration: ${missing} must be set when ${given} is`);
  }
  return Object.freeze({
    region: e.S3_REGION,
    forcePathStyle: e.S3_FORCE_PATH_STYLE,
    ...(e.S3_ENDPOINT !== undefined && { endpoint: e.S3_ENDPOINT }),
    ...(e.S3_ACCESS_KEY_ID !== undefined && { accessKeyId: e.S3_ACCESS_KEY_ID }),
    ...(e.S3_SECRET_ACCESS_KEY !== undefined && { secretAccessKey: e.S3_SECRET_ACCESS_KEY }),
  });
}

function modelSourceSettings(e: Env, cwd: string, dataDir: string): ModelSourceSettings {
  const searchPath = e.CACHEBLEND_MODEL_PATH
    ? e.CACHEBLEND_MODEL_PATH.split(':')
        .filter((dir) => dir.trim() !== '')
        .map((dir) => path.resolve(cwd, dir.trim()))
    : [path.join(projectRoot(), 'models'), path.join(dataDir, 'models')];
  if (searchPath.length === 0) {
    throw new ConfigError('invalid configuration: CACHEBLEND_MODEL_PATH names no directory');
  }
  // The Hub cache Python tools share, so a model they downloaded is not fetched again.
  const cacheDir =
    e.CACHEBLEND_MODEL_CACHE ?? hfHubCache({ HF_HOME: e.HF_HOME, HF_HUB_CACHE: e.HF_HUB_CACHE });
  return Object.freeze({
    searchPath: Object.freeze(searchPath),
    cacheDir: path.resolve(cwd, cacheDir),
    allowDownload: e.CACHEBLEND_ALLOW_DOWNLOAD,
    endpoint: e.HF_ENDPOINT.replace(/\/+$/, ''),
    ...(e.HF_TOKEN !== undefined && { token: e.HF_TOKEN }),
    ...(e.CACHEBLEND_WEIGHT_CACHE && {
      weightCache: e.CACHEBLEND_WEIGHT_CACHE === 'off' ? 'off' : path.resolve(cwd, e.CACHEBLEND_WEIGHT_CACHE),
    }),
  });
}

/** A copy safe to log: secrets and URL passwords replaced by '***'. */
export function redactConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    redisUrl: redactUrlPassword(config.redisUrl),
    apiKeys: config.apiKeys.map((k) => ({ tenant: k.tenant, key: '***' })),
    metricsToken: config.metricsToken === null ? null : '***',
    modelSource: {
      ...config.modelSource,
      ...(config.modelSource.token !== undefined && { token: '***' }),
    },
    s3: {
      ...config.s3,
      ...(config.s3.accessKeyId !== undefined && { accessKeyId: '***' }),
      ...(config.s3.secretAccessKey !== undefined && { secretAccessKey: '***' }),
    },
  };
}

function redactUrlPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '***';
  }
}

/** `file://rel/dir` and `file://./rel/dir` become `file:///abs/dir`; other URLs pass through. */
function absoluteFileUrl(url: string, cwd: string): string {
  if (!url.startsWith('file://')) return url;
  const dir = url.slice('file://'.length);
  return `file://${path.resolve(cwd, dir)}`;
}
