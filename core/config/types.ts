/** The parsed configuration's types (loadConfig in index.ts builds them from the environment). */
import type { KvDtype } from '../kv/format.js';
import type { WeightSetting } from '../model/weights/format.js';

export type ExecutionProvider = 'cpu' | 'webgpu' | 'cuda';
export type { KvDtype };
export type DeviceDtype = 'float32' | 'float16';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';

export interface S3Settings {
  readonly endpoint?: string;
  readonly region: string;
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
  readonly forcePathStyle: boolean;
}

/** Where models are found (see core/model/resolve.ts). */
export interface ModelSourceSettings {
  /** Absolute directories searched for a model name, in order. */
  readonly searchPath: readonly string[];
  /** Absolute: the Hugging Face Hub cache (`<cacheDir>/models--<org>--<name>`), read and downloaded into. */
  readonly cacheDir: string;
  readonly allowDownload: boolean;
  readonly endpoint: string;
  readonly token?: string;
  /** Root of the load cache (fingerprint, quantized weights), `off`, or unset: beside the checkpoint. */
  readonly weightCache?: string;
}

/** A seed node of a Redis Cluster. */
export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

/** One API key and the tenant it authenticates. */
export interface ApiKey {
  readonly tenant: string;
  readonly key: string;
}

/** Tenant names: letters, digits, '_' and '-'. */
export const TENANT_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** The tenant of every request while API_KEYS is unset (and of documents made then). */
export const DEFAULT_TENANT = 'default';

export interface Config {
  readonly port: number;
  readonly host: string;
  /** Absolute. */
  readonly dataDir: string;
  readonly redisUrl: string;
  /** True when REDIS_URL was unset, so a launcher may start an embedded redis-server under dataDir. */
  readonly redisUrlDefaulted: boolean;
  /** Object store URL for chunk KV caches; relative file:// URLs are made absolute. */
  readonly kvStoreUrl: string;
  /** Connection settings for s3:// stores; pass as `openObjectStore(url, { s3: config.s3 })`. */
  readonly s3: S3Settings;
  readonly model: string;
  readonly modelSource: ModelSourceSettings;
  readonly executionProvider: ExecutionProvider;
  /** GPU_INDEX: the GPU this process computes on, in PCI order (null: the provider's default). */
  readonly gpuIndex: number | null;
  readonly kvDtype: KvDtype;
  readonly lruBytes: number;
  /**
   * Bytes of chunk caches a device-resident (WebGPU) engine keeps in GPU memory; 0 disables the tier;
   * `auto` sizes it to the card (core/model/device/memory.ts).
   */
  readonly gpuTierBytes: number | 'auto';
  /** Precision of activations and KV on the device (WebGPU). */
  readonly deviceDtype: DeviceDtype;
  /** Format of the linear layers' weights; `auto`: fp32 on the CPU, the device precision's own on the GPU. */
  readonly weights: WeightSetting;
  /** Greedy tokens a device-resident engine decodes per run (argmax on the GPU); 1 decodes token by token. */
  readonly deviceDecodeBurst: number;
  /** Absolute. */
  readonly diskCacheDir: string;
  readonly chunkTokenBudget: number;
  readonly queryTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly queuePrefix: string;
  readonly blendConcurrency: number;
  /** r_min of `ratio: "auto"`: the loading controller never recomputes less than this fraction. */
  readonly blendMinRatio: number;
  /**
   * What a model that `cacheblend calibrate` flagged (its blend far from full) gets: `report` (say so at
   * start and in /v1/models) or `full` (blend requests are prefilled in full instead).
   */
  readonly calibrationGate: 'report' | 'full';
  readonly precomputeConcurrency: number;
  readonly logLevel: LogLevel;
  /** Port of the /metrics server of a worker started alone; null: none. */
  readonly metricsPort: number | null;
  /** The redis-server binary the embedded launcher (and the test harness) starts. */
  readonly redisServerBin: string;
  /** Seeds of a Redis Cluster (REDIS_URL then only lends its credentials); empty: a single Redis. */
  readonly redisClusterNodes: readonly RedisNode[];
  /** Refuse to start against a Redis without persistence or with an evicting maxmemory-policy. */
  readonly redisRequireDurable: boolean;
  /** API keys; empty: no authentication, every request is DEFAULT_TENANT's. */
  readonly apiKeys: readonly ApiKey[];
  /** Bearer token for GET /metrics on the API port; null: open while apiKeys is empty, else refused. */
  readonly metricsToken: string | null;
  /** Chunk caches shared across tenants (no per-tenant salt in the chunk identity). */
  readonly shareChunkCache: boolean;
  /** Queries waiting for a blend worker beyond which new ones get 429. */
  readonly queryQueueLimit: number;
  /** Chunks the documents a query names may hold in all (its candidates); more is a 413. */
  readonly maxQueryChunks: number;
  /** Requests per API key (or client address when open) per minute on /v1; 0: unlimited. */
  readonly rateLimitPerMinute: number;
  /** Bound of the disk tier in bytes; 0 disables the tier. */
  readonly diskCacheBytes: number;
  /** BullMQ job lock duration: a job whose worker died is taken up again after about this long. */
  readonly jobLockMs: number;
  /** Attempts per precompute job (backoff 1 s, doubling, capped at 60 s). */
  readonly precomputeAttempts: number;
  /** Period of the reconciler (re-enqueue lost chunks, retry failed ones, collect garbage); 0: off. */
  readonly reconcileIntervalMs: number;
  /** Finished jobs both queues keep (the /jobs board, `?async=1` results): each bound by count and age. */
  readonly jobHistory: JobHistory;
}

/** How many finished jobs a queue keeps, and for how long (seconds): whichever bound is reached first. */
export interface KeepJobs {
  readonly count: number;
  readonly age: number;
}

export interface JobHistory {
  readonly completed: KeepJobs;
  readonly failed: KeepJobs;
}

export interface LoadConfigOptions {
  /** Base for relative paths; default process.cwd(). */
  cwd?: string;
  /** How a message names a variable (the CLI names the flag that set it); default the variable's name. */
  label?: (variable: string) => string;
}

/** Variables whose values must never appear in error messages or logs. */
