/**
 * Service configuration: every setting comes from an environment variable, is parsed once with zod into
 * a deeply frozen object, and a bad value fails fast with a ConfigError naming the variable. Empty
 * variables count as unset (so `FOO=` in a compose file means "use the default"). The CLI's setting flags
 * (cli/service-flags.ts) are these variables under flag names, checked by this same schema.
 *
 * The settings themselves (variable, schema, default, doc line, flag) are declared once, in settings.ts.
 */
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { hfHubCache, projectRoot } from '../util/fs.js';

export * from './types.js';
export { DEFAULT_JOB_HISTORY, SETTINGS, settingDefault, shownDefault, type SettingName } from './settings.js';
import { ENV_SCHEMA, SECRET_SETTINGS, SETTINGS, declaredConfig, type SettingValues } from './settings.js';
import type {
  ApiKey,
  Config,
  LoadConfigOptions,
  ModelSourceSettings,
  RedisNode,
  S3Settings,
} from './types.js';

/** Names of all variables read by loadConfig. */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze(Object.keys(SETTINGS));

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
    ...declaredConfig(e),
    dataDir,
    redisUrl: e.REDIS_URL ?? 'redis://127.0.0.1:6379',
    redisUrlDefaulted: e.REDIS_URL === undefined,
    kvStoreUrl: absoluteFileUrl(e.KV_STORE_URL ?? `file://${path.join(dataDir, 'kv')}`, cwd),
    s3: s3Settings(e),
    modelSource: modelSourceSettings(e, cwd, dataDir),
    gpuIndex: e.GPU_INDEX ?? null,
    diskCacheDir: path.resolve(cwd, e.DISK_CACHE_DIR ?? path.join(dataDir, 'disk-cache')),
    metricsPort: e.METRICS_PORT ?? null,
    redisClusterNodes: Object.freeze(clusterNodes(e.REDIS_CLUSTER_NODES)),
    apiKeys: Object.freeze(apiKeys(e.API_KEYS)),
    metricsToken: e.METRICS_TOKEN ?? null,
    jobHistory: Object.freeze({
      completed: Object.freeze({ count: e.JOBS_KEEP_COMPLETED, age: e.JOBS_KEEP_COMPLETED_S }),
      failed: Object.freeze({ count: e.JOBS_KEEP_FAILED, age: e.JOBS_KEEP_FAILED_S }),
    }),
  };
  return Object.freeze(config);
}

type Env = SettingValues;

/** Validate the variables (empty counts as unset); ConfigError names each bad one, never a secret's value. */
function parseEnv(env: Record<string, string | undefined>, label: (name: string) => string): Env {
  const raw: Record<string, string | undefined> = {};
  for (const name of CONFIG_VARIABLES) {
    const value = env[name];
    raw[name] = value === undefined || value.trim() === '' ? undefined : value.trim();
  }
  const parsed = ENV_SCHEMA.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? '?');
      const value = raw[name];
      const shown = value === undefined || SECRET_SETTINGS.has(name) ? '' : ` (got ${JSON.stringify(value)})`;
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
