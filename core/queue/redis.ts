import { Redis, type RedisOptions } from 'ioredis';
import { CacheBlendError, UnavailableError, errorMessage } from '../errors.js';
import { withTimeout } from '../util/time.js';

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

export function createRedis(url: string, role: RedisRole): Redis {
  const client = new Redis(url, redisOptions(role));
  // Connection errors are reported through readiness and failed commands; don't crash on 'error'.
  client.on('error', () => undefined);
  return client;
}

/** Resolves once the client is ready, or rejects with UnavailableError after `timeoutMs`. */
export function waitForRedis(client: Redis, timeoutMs = 5_000): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new UnavailableError(`Redis did not become ready within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}

/** PING with a deadline; throws UnavailableError. */
export async function pingRedis(client: Redis, timeoutMs = 2_000): Promise<void> {
  if (client.status !== 'ready') throw new UnavailableError(`Redis is not connected (${client.status})`);
  await withTimeout(client.ping(), timeoutMs, 'Redis PING');
}

/** Errors from ioredis (connection refused, closed, offline queue disabled, timeouts) become UnavailableError. */
export function redisError(err: unknown, what = 'Redis'): Error {
  if (err instanceof CacheBlendError) return err;
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

/** Closes a client without waiting on a server that may be gone. */
export async function closeRedis(client: Redis): Promise<void> {
  try {
    if (client.status === 'ready') await withTimeout(client.quit(), 1_000, 'Redis QUIT');
  } catch {
    // fall through to disconnect
  }
  client.disconnect();
}
