/**
 * Every setting of the service, declared once: its environment variable, its schema (zod; a bad value is
 * a ConfigError naming the variable), its default as a reader sees it, one line of documentation, its
 * flag on the service commands (`--name`, unless environment-only), whether its value is secret, and the
 * Config property it sets as is. The schema loadConfig parses, the Config type's plain properties, the
 * commands' `--help`, the flags and the table in docs/configuration.md (test/unit/config-docs.test.ts)
 * all come from here.
 */
import { z } from 'zod';
import type { JobHistory } from './types.js';

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

interface SettingSpec {
  schema: z.ZodType<unknown, string | undefined>;
  /** The default as docs and help show it, where the schema has none (loadConfig derives it). */
  shown?: string;
  /** One line of documentation (Markdown); `--help` shows it as plain text. */
  doc: string;
  /** The Config property the value becomes as it is (absent: loadConfig builds the property). */
  key?: string;
  /** false: environment only, no flag (a flag's value is visible to every user of the machine, `ps`). */
  flag?: false;
  /** Never shown in a message (credentials, or URLs that may hold one). */
  secret?: true;
}

export const SETTINGS = {
  PORT: {
    schema: int(0, 65535, 8080),
    doc: 'API port',
    key: 'port',
  },
  HOST: {
    schema: noSpaces.default('127.0.0.1'),
    doc: 'API bind address (`0.0.0.0` in containers)',
    key: 'host',
  },
  DATA_DIR: {
    schema: z.string().default('./.data'),
    doc: 'local state: file store, disk cache, embedded Redis',
  },
  REDIS_URL: {
    schema: urlWithProtocols(['redis:', 'rediss:'], 'Redis').optional(),
    shown: 'redis://127.0.0.1:6379',
    doc: 'unset + nothing answering: `npm start` runs redis-server',
    secret: true,
  },
  KV_STORE_URL: {
    schema: z
      .string()
      .regex(
        /^(memory:\/\/[A-Za-z0-9._-]*|file:\/\/.+|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?)$/,
        'must be memory://[name], file:///abs/dir, file://./rel/dir or s3://bucket[/prefix]',
      )
      .optional(),
    shown: 'file://$DATA_DIR/kv',
    doc: '`file:///dir`, `s3://bucket[/prefix]`, `memory://` (tests)',
    secret: true,
  },
  S3_ENDPOINT: {
    schema: urlWithProtocols(['http:', 'https:'], 'http(s)').optional(),
    shown: 'AWS',
    doc: 'e.g. `http://127.0.0.1:9000` for MinIO',
  },
  S3_REGION: {
    schema: noSpaces.default('us-east-1'),
    doc: 'S3 region',
  },
  S3_ACCESS_KEY_ID: {
    schema: z.string().optional(),
    shown: 'SDK default chain',
    doc: 'S3 credentials: set both or neither',
    flag: false,
    secret: true,
  },
  S3_SECRET_ACCESS_KEY: {
    schema: z.string().optional(),
    shown: 'SDK default chain',
    doc: '(never logged)',
    flag: false,
    secret: true,
  },
  S3_FORCE_PATH_STYLE: {
    schema: bool(true),
    doc: 'MinIO and s3rver need path-style',
  },
  MODEL: {
    schema: noSpaces.default('stories260K'),
    doc: 'model folder path, or a name looked up in the model path',
    key: 'model',
  },
  CACHEBLEND_MODEL_PATH: {
    schema: z.string().optional(),
    shown: '<repo>/models:$DATA_DIR/models',
    doc: '`:`-separated folders searched for `MODEL`',
  },
  CACHEBLEND_MODEL_CACHE: {
    schema: z.string().optional(),
    shown: 'the Hugging Face cache',
    doc: 'the Hub cache models are found in and downloaded into (`models--<org>--<name>/`)',
  },
  HF_HUB_CACHE: {
    schema: z.string().optional(),
    shown: '$HF_HOME/hub',
    doc: 'the Hugging Face cache, as huggingface_hub reads it',
  },
  HF_HOME: {
    schema: z.string().optional(),
    shown: '~/.cache/huggingface',
    doc: "Hugging Face's home folder (the cache is its `hub/`)",
  },
  CACHEBLEND_ALLOW_DOWNLOAD: {
    schema: bool(false),
    doc: '`true`/`1`: download a `MODEL` found nowhere from the Hub',
  },
  CACHEBLEND_WEIGHT_CACHE: {
    schema: z.string().optional(),
    shown: '<checkpoint>/.cacheblend',
    doc: 'where a checkpoint of 256 MiB or more keeps its fingerprint and quantized weights between starts (read-only checkpoints: `~/.cache/cacheblend/weights`); `off`',
  },
  HF_ENDPOINT: {
    schema: urlWithProtocols(['http:', 'https:'], 'http(s)').default('https://huggingface.co'),
    doc: 'Hub base URL (a mirror)',
  },
  HF_TOKEN: {
    schema: z.string().optional(),
    shown: '(none)',
    doc: 'Hub token for gated repositories (never logged)',
    flag: false,
    secret: true,
  },
  EXECUTION_PROVIDER: {
    schema: oneOf(['cpu', 'webgpu', 'cuda'], 'cpu'),
    doc: 'cpu, webgpu, cuda',
    key: 'executionProvider',
  },
  GPU_INDEX: {
    schema: integer(0, 255).optional(),
    shown: '(none)',
    doc: "the GPU this process computes on, in PCI order (`nvidia-smi`'s index); see docs/gpu.md",
  },
  KV_DTYPE: {
    schema: oneOf(['float16', 'float32', 'int8'], 'float16'),
    doc: 'stored caches (`--kv-dtype`): float16, float32, int8; bytes a token and layer 4HD, 8HD, 2H(D+2) (H KV heads, D head dim)',
    key: 'kvDtype',
  },
  LRU_BYTES: {
    schema: int(0, MAX, 256 * 1024 * 1024),
    doc: 'in-process LRU of chunk caches per blend worker (0: off)',
    key: 'lruBytes',
  },
  GPU_TIER_BYTES: {
    schema: z
      .union([z.literal('auto'), integer(0, MAX)], {
        error: `must be auto or an integer between 0 and ${MAX}`,
      })
      .default('auto'),
    doc: "chunk caches kept in GPU memory (webgpu; 0: off); auto: the card's free memory after the model, less a reserve for runs",
    key: 'gpuTierBytes',
  },
  DEVICE_DTYPE: {
    schema: oneOf(['float16', 'float32'], 'float16'),
    doc: 'webgpu compute precision: float16, float32 (docs/gpu.md)',
    key: 'deviceDtype',
  },
  WEIGHTS: {
    schema: oneOf(['auto', 'fp32', 'fp16', 'q4', 'q8'], 'auto'),
    doc: "linear layers' weights: fp32, fp16, q4 (4-bit), q8 (8-bit); auto: fp32 on the CPU, `DEVICE_DTYPE`'s on the GPU (docs/model-scale.md)",
    key: 'weights',
  },
  DEVICE_DECODE_BURST: {
    schema: int(1, 64, 8),
    doc: 'webgpu: greedy tokens decoded per GPU run, argmax on the GPU (1: off)',
    key: 'deviceDecodeBurst',
  },
  DISK_CACHE_DIR: {
    schema: z.string().optional(),
    shown: '$DATA_DIR/disk-cache',
    doc: 'local disk tier of a blend worker (one per worker)',
  },
  DISK_CACHE_BYTES: {
    schema: int(0, MAX, 2 * 1024 ** 3),
    doc: 'bound of the disk tier, least recently used evicted (0: off)',
    key: 'diskCacheBytes',
  },
  CHUNK_TOKEN_BUDGET: {
    schema: int(1, 1_000_000, 256),
    doc: 'max tokens per chunk when splitting `text`',
    key: 'chunkTokenBudget',
  },
  QUERY_TIMEOUT_MS: {
    schema: int(1, 24 * 60 * 60 * 1000, 60_000),
    doc: 'how long `POST /v1/query` waits before answering 504 (and cancelling)',
    key: 'queryTimeoutMs',
  },
  MAX_BODY_BYTES: {
    schema: int(1, MAX, 1024 * 1024),
    doc: 'larger bodies get 413',
    key: 'maxBodyBytes',
  },
  QUEUE_PREFIX: {
    schema: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 characters from A-Z a-z 0-9 _ . -')
      .default('cacheblend'),
    doc: 'prefix of every Redis key (BullMQ and bookkeeping)',
    key: 'queuePrefix',
  },
  BLEND_CONCURRENCY: {
    schema: int(1, 1024, 1),
    doc: 'blend jobs per worker',
    key: 'blendConcurrency',
  },
  BLEND_MIN_RATIO: {
    schema: z
      .string()
      .regex(/^(0(\.\d+)?|1(\.0+)?)$/, 'must be a number in [0, 1]')
      .transform(Number)
      .default(0.15),
    doc: 'r_min of `ratio: "auto"`, in [0, 1]',
    key: 'blendMinRatio',
  },
  CALIBRATION_GATE: {
    schema: oneOf(['report', 'full'], 'report'),
    doc: '`full`: blend requests run in full mode for a model `cacheblend calibrate` flagged ([accuracy.md](accuracy.md))',
    key: 'calibrationGate',
  },
  PRECOMPUTE_CONCURRENCY: {
    schema: int(1, 1024, 2),
    doc: 'precompute jobs per worker',
    key: 'precomputeConcurrency',
  },
  PRECOMPUTE_ATTEMPTS: {
    schema: int(1, 100, 12),
    doc: 'tries per chunk; backoff 1 s doubling to 60 s (~6 min)',
    key: 'precomputeAttempts',
  },
  JOB_LOCK_MS: {
    schema: int(1_000, 3_600_000, 30_000),
    doc: 'a job whose worker died runs again after about this long',
    key: 'jobLockMs',
  },
  RECONCILE_INTERVAL_MS: {
    schema: int(0, 24 * 60 * 60 * 1000, 30_000),
    doc: 'reconciler period: lost chunks re-enqueued, failed retried (0: off)',
    key: 'reconcileIntervalMs',
  },
  JOBS_KEEP_COMPLETED: {
    schema: int(0, 10_000_000, DEFAULT_JOB_HISTORY.completed.count),
    doc: 'completed jobs each queue keeps for the `/jobs` board and `?async=1` results (0: none)',
  },
  JOBS_KEEP_COMPLETED_S: {
    schema: int(0, 365 * 24 * 3_600, DEFAULT_JOB_HISTORY.completed.age),
    doc: '… for at most this many seconds (an hour)',
  },
  JOBS_KEEP_FAILED: {
    schema: int(0, 10_000_000, DEFAULT_JOB_HISTORY.failed.count),
    doc: 'failed jobs each queue keeps, with their error (0: none)',
  },
  JOBS_KEEP_FAILED_S: {
    schema: int(0, 365 * 24 * 3_600, DEFAULT_JOB_HISTORY.failed.age),
    doc: '… for at most this many seconds (a week: failures are what an operator looks into)',
  },
  QUERY_QUEUE_LIMIT: {
    schema: int(1, 1_000_000, 64),
    doc: 'queries waiting for a blend worker beyond which `429`',
    key: 'queryQueueLimit',
  },
  MAX_QUERY_CHUNKS: {
    schema: int(1, 10_000_000, 20_000),
    doc: 'chunks the documents a query names may hold in all; more: `413`',
    key: 'maxQueryChunks',
  },
  RATE_LIMIT_PER_MINUTE: {
    schema: int(0, 1_000_000_000, 0),
    doc: 'requests per API key (per address when open) per minute; 0: off',
    key: 'rateLimitPerMinute',
  },
  API_KEYS: {
    schema: z
      .string()
      .regex(
        /^[A-Za-z0-9_-]{1,64}:[^\s,:]{16,256}(,[A-Za-z0-9_-]{1,64}:[^\s,:]{16,256})*$/,
        'must be tenant:key[,tenant:key…] (tenants: A-Z a-z 0-9 _ -; keys: 16-256 characters, no spaces, commas or colons)',
      )
      .optional(),
    shown: '(none: open)',
    doc: '`tenant:key,…`: Bearer authentication, one tenant per key',
    flag: false,
    secret: true,
  },
  METRICS_TOKEN: {
    schema: z.string().min(16, 'must be at least 16 characters').optional(),
    shown: '(none)',
    doc: "Bearer token for the API's `/metrics` (needed with `API_KEYS`)",
    flag: false,
    secret: true,
  },
  SHARE_CHUNK_CACHE: {
    schema: bool(false),
    doc: 'tenants share chunk caches (no per-tenant salt)',
    key: 'shareChunkCache',
  },
  REDIS_CLUSTER_NODES: {
    schema: z
      .string()
      .regex(/^[^\s,:]+:\d{1,5}(,[^\s,:]+:\d{1,5})*$/, 'must be host:port[,host:port…]')
      .optional(),
    shown: '(none)',
    doc: '`host:port,…`: run on Redis Cluster (`REDIS_URL` lends credentials)',
  },
  REDIS_REQUIRE_DURABLE: {
    schema: bool(true),
    doc: 'refuse a Redis without persistence or `noeviction`; false: warn',
    key: 'redisRequireDurable',
  },
  LOG_LEVEL: {
    schema: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'silent'], 'info'),
    doc: 'JSON lines on stderr: trace … error, silent',
    key: 'logLevel',
  },
  METRICS_PORT: {
    schema: integer(0, 65535).optional(),
    shown: '(none)',
    doc: 'serve `/metrics` and `/healthz` on this port too (any process)',
  },
  REDIS_SERVER_BIN: {
    schema: z.string().default('redis-server'),
    doc: 'binary the embedded Redis is started from',
    key: 'redisServerBin',
  },
} as const satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTINGS;

/** Each setting's parsed value. */
export type SettingValues = z.output<typeof ENV_SCHEMA>;

type KeyOf<N extends SettingName> = (typeof SETTINGS)[N] extends { key: infer K extends string } ? K : never;

/** The Config properties that are settings as they are, typed by their schemas. */
export type DeclaredConfig = { readonly [N in SettingName as KeyOf<N>]: SettingValues[N] };

const NAMES = Object.keys(SETTINGS) as SettingName[];
const spec = (name: SettingName): SettingSpec => SETTINGS[name];

/** The schema of every variable. */
export const ENV_SCHEMA = z.object(
  Object.fromEntries(NAMES.map((n) => [n, SETTINGS[n].schema])) as {
    [N in SettingName]: (typeof SETTINGS)[N]['schema'];
  },
);

/** The values of the settings that are Config properties as they are. */
export function declaredConfig(values: SettingValues): DeclaredConfig {
  const entries = NAMES.flatMap((n) => {
    const key = spec(n).key;
    return key === undefined ? [] : [[key, values[n]] as const];
  });
  return Object.fromEntries(entries) as unknown as DeclaredConfig;
}

/** A setting's default as docs and help show it: `shown`, else the schema's default. */
export function shownDefault(name: SettingName): string {
  const s = spec(name);
  if (s.shown !== undefined) return s.shown;
  return s.schema instanceof z.ZodDefault ? String(s.schema.def.defaultValue) : '(none)';
}

/** The schema's default of a setting that has one (what the service uses when the variable is unset). */
export function settingDefault<N extends SettingName>(name: N): SettingValues[N] {
  const schema: z.ZodType = SETTINGS[name].schema;
  const parsed = schema.safeParse(undefined);
  if (!parsed.success || parsed.data === undefined) throw new Error(`${name} has no default`);
  return parsed.data as SettingValues[N];
}

/** Variables that are flags too (`--name`) on the service commands. */
export const FLAG_SETTINGS: readonly SettingName[] = NAMES.filter((n) => spec(n).flag !== false);

/** Variables whose values never appear in messages or logs. */
export const SECRET_SETTINGS: ReadonlySet<string> = new Set(NAMES.filter((n) => spec(n).secret === true));

/** A doc line as plain text (for `--help`): no code spans, links as their text. */
export function plainDoc(doc: string): string {
  return doc.replaceAll('`', '').replace(/\[([^\]]+)\]\([^)]*\)/g, '$1');
}

/** The settings table of docs/configuration.md: one row per setting, in declaration order. */
export function settingsTable(): string[][] {
  return NAMES.map((n) => [`\`${n}\``, shownDefault(n), spec(n).doc]);
}
