import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config/index.js';
import { CacheBlendError, UnavailableError, errorMessage } from '../errors.js';
import { withTimeout } from '../util/time.js';

/** A connection to one Redis, or to a Redis Cluster (REDIS_CLUSTER_NODES); both speak the same commands. */
export type RedisClient = Redis | Cluster;

/** Where Redis is: REDIS_URL, or a cluster's seed nodes (then REDIS_URL lends only its credentials). */
export type RedisSettings = Pick<Config, 'redisUrl' | 'redisClusterNodes'>;

/**
 * The key prefix BullMQ and the documents' bookkeeping use: QUEUE_PREFIX in a hash tag, so that every key
 * lands in one Redis Cluster slot and every Lua script (BullMQ's and ours) runs on one node.
 */
export function keyPrefix(queuePrefix: string): string {
  return `{${queuePrefix}}`;
}

/**
 * Redis connections, one kind per role:
 * - `worker`: BullMQ Worker/QueueEvents connections; commands wait through reconnects
 *   (`maxRetriesPerRequest: null`, which BullMQ requires for blocking commands).
 * - `producer`: the API's and the batch command's connection; fails fast while Redis is down
 *   (`enableOfflineQueue: false`, a command timeout) so a request gets a 503 instead of hanging.
 */
export type RedisRole = 'worker' | 'producer';

export function redisOptions(role: RedisRole): RedisOptions {
  const common: RedisOptions = {
    connectTimeout: 5_000,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
  };
  return role === 'worker'
    ? { ...common, maxRetriesPerRequest: null }
    : { ...common, maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 5_000 };
}

export function createRedis(settings: RedisSettings, role: RedisRole): RedisClient {
  const client =
    settings.redisClusterNodes.length > 0
      ? createCluster(settings, role)
      : new Redis(settings.redisUrl, redisOptions(role));
  // Connection errors are reported through readiness and failed commands; don't crash on 'error'.
  client.on('error', () => undefined);
  return client;
}

/** A Cluster client over the seed nodes, with REDIS_URL's user, password and TLS for every node. */
function createCluster(settings: RedisSettings, role: RedisRole): Cluster {
  const u = new URL(settings.redisUrl);
  const auth: RedisOptions = {
    ...(u.username && { username: decodeURIComponent(u.username) }),
    ...(u.password && { password: decodeURIComponent(u.password) }),
    ...(u.protocol === 'rediss:' && { tls: {} }),
  };
  const { retryStrategy, ...perNode } = redisOptions(role);
  return new Cluster(
    settings.redisClusterNodes.map((n) => ({ host: n.host, port: n.port })),
    {
      redisOptions: { ...perNode, ...auth },
      clusterRetryStrategy: retryStrategy,
      enableOfflineQueue: role === 'worker',
      slotsRefreshTimeout: 2_000,
    },
  );
}

/** One pending "ready" per client, however many callers wait on it (a listener each would pile up). */
const nextReady = new WeakMap<RedisClient, Promise<void>>();

function readyEvent(client: RedisClient): Promise<void> {
  let ready = nextReady.get(client);
  if (!ready) {
    ready = new Promise<void>((resolve) =>
      client.once('ready', () => {
        nextReady.delete(client);
        resolve();
      }),
    );
    nextReady.set(client, ready);
  }
  return ready;
}

/** Resolves once the client is ready, or rejects with UnavailableError after `timeoutMs`. */
export function waitForRedis(client: RedisClient, timeoutMs = 5_000): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new UnavailableError(`Redis did not become ready within ${timeoutMs} ms`)),
      timeoutMs,
    );
    void readyEvent(client).then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** PING with a deadline; throws UnavailableError. */
export async function pingRedis(client: RedisClient, timeoutMs = 2_000): Promise<void> {
  if (client.status !== 'ready') throw new UnavailableError(`Redis is not connected (${client.status})`);
  await withTimeout(client.ping(), timeoutMs, 'Redis PING');
}

/**
 * Redis's error replies (their leading code) that refuse a write while Redis is up: memory full under
 * noeviction, a read-only replica, a failed background save with stop-writes-on-bgsave-error.
 */
const WRITE_REFUSAL_CODES = new Set(['OOM', 'READONLY', 'MISCONF']);

/**
 * The code of a Redis error reply (`OOM`, `NOSCRIPT`, …), or null for any other error. Redis's protocol
 * sends an error as one line whose first word is its code; ioredis keeps that line as the ReplyError's
 * message and has no property for the code, so it is taken from there, here only.
 */
export function redisReplyCode(err: unknown): string | null {
  const e = err as { name?: unknown; message?: unknown } | null;
  if (e?.name !== 'ReplyError' || typeof e.message !== 'string') return null;
  const space = e.message.indexOf(' ');
  return space < 0 ? e.message : e.message.slice(0, space);
}

/** Whether `err` is Redis refusing a write (an error reply whose code is OOM, READONLY or MISCONF). */
export function isWriteRefusal(err: unknown): boolean {
  return WRITE_REFUSAL_CODES.has(redisReplyCode(err) ?? '');
}

const writeRefusalListeners = new Set<(err: unknown) => void>();

/**
 * Calls `listener` with each refused write that redisError() maps (readiness stops trusting its cached
 * write probe at once). Returns the unsubscribe.
 */
export function onRedisWriteRefused(listener: (err: unknown) => void): () => void {
  writeRefusalListeners.add(listener);
  return () => writeRefusalListeners.delete(listener);
}

/** Errors from ioredis (connection refused, closed, offline queue disabled, timeouts) become UnavailableError. */
export function redisError(err: unknown, what = 'Redis'): Error {
  if (err instanceof CacheBlendError) return err;
  if (isWriteRefusal(err)) for (const listener of writeRefusalListeners) listener(err);
  return new UnavailableError(`${what} is unavailable: ${errorMessage(err)}`, { cause: err });
}

/** Runs a Redis operation, mapping client errors to UnavailableError. */
export async function redisCall<T>(fn: () => Promise<T>, what = 'Redis'): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw redisError(err, what);
  }
}

/** Resolves once the client has lost its server (at once when it is not connected now). */
export function whenDisconnected(client: RedisClient): Promise<void> {
  if (client.status !== 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      client.off('close', done);
      client.off('end', done);
      resolve();
    };
    client.once('close', done);
    client.once('end', done);
  });
}

/**
 * Wait for a graceful close (running jobs finish, connections quit) for at most `ms`, giving up at once
 * when `client` loses Redis: a server that went away (stopped by the same Ctrl-C, say) never answers, and
 * the caller then forces the close. True when the graceful close finished.
 */
export async function closeWhileConnected(
  close: () => Promise<unknown>,
  client: RedisClient,
  ms: number,
): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    close().then(
      () => true,
      () => false,
    ),
    whenDisconnected(client).then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return outcome;
}

/**
 * Drop the connections of BullMQ queues, workers or queue events once Redis is gone, without waiting:
 * BullMQ's disconnect first waits for connections that will not come back, and nothing is left to record.
 */
export function dropQueues(queues: { disconnect(): Promise<void> }[]): void {
  for (const q of queues) void q.disconnect().catch(() => undefined);
}

/** Closes a client without waiting on a server that may be gone. */
export async function closeRedis(client: RedisClient): Promise<void> {
  try {
    if (client.status === 'ready') await withTimeout(client.quit(), 1_000, 'Redis QUIT');
  } catch {
    // fall through to disconnect
  }
  client.disconnect();
}
