/** The parsed configuration's types (loadConfig in index.ts builds them from the environment). */
import type { KvDtype } from '../kv/format.js';
import type { DeclaredConfig, SettingValues } from './settings.js';

export type ExecutionProvider = SettingValues['EXECUTION_PROVIDER'];
export type { KvDtype };
export type DeviceDtype = SettingValues['DEVICE_DTYPE'];
export type LogLevel = SettingValues['LOG_LEVEL'];

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

/** The settings that are properties as they are come from their declarations (settings.ts). */
export interface Config extends DeclaredConfig {
  /** Absolute. */
  readonly dataDir: string;
  readonly redisUrl: string;
  /** True when REDIS_URL was unset, so a launcher may start an embedded redis-server under dataDir. */
  readonly redisUrlDefaulted: boolean;
  /** Object store URL for chunk KV caches; relative file:// URLs are made absolute. */
  readonly kvStoreUrl: string;
  /** Connection settings for s3:// stores; pass as `openObjectStore(url, { s3: config.s3 })`. */
  readonly s3: S3Settings;
  readonly modelSource: ModelSourceSettings;
  /** GPU_INDEX: the GPU this process computes on, in PCI order (null: the provider's default). */
  readonly gpuIndex: number | null;
  /** Absolute. */
  readonly diskCacheDir: string;
  /** Port of the /metrics server of a worker started alone; null: none. */
  readonly metricsPort: number | null;
  /** Seeds of a Redis Cluster (REDIS_URL then only lends its credentials); empty: a single Redis. */
  readonly redisClusterNodes: readonly RedisNode[];
  /** API keys; empty: no authentication, every request is DEFAULT_TENANT's. */
  readonly apiKeys: readonly ApiKey[];
  /** Bearer token for GET /metrics on the API port; null: open while apiKeys is empty, else refused. */
  readonly metricsToken: string | null;
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
