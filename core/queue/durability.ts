/**
 * Is the Redis we run on durable? The document index, chunk states and queues live only there: a Redis
 * without persistence forgets every document on restart, and one that evicts keys under memory pressure
 * drops jobs and bookkeeping at random (BullMQ requires `noeviction` for the same reason). Services check
 * at start and refuse to run (REDIS_REQUIRE_DURABLE=false: log loudly and run); readiness reports it.
 */
import { Cluster, type Redis } from 'ioredis';
import { ConfigError, errorMessage } from '../errors.js';
import type { Logger } from '../ops/log.js';
import { waitForRedis, type RedisClient } from './redis.js';

export const DURABILITY_FIX =
  'run Redis with persistence and without eviction: `appendonly yes` (or RDB `save` points) and ' +
  '`maxmemory-policy noeviction` in redis.conf (live: `redis-cli CONFIG SET appendonly yes`, ' +
  '`CONFIG SET maxmemory-policy noeviction`, then `CONFIG REWRITE`); if documents were lost, restore the ' +
  'index from the manifests with `cacheblend rebuild`. REDIS_REQUIRE_DURABLE=false runs anyway.';

async function configValue(node: Redis, name: string): Promise<string> {
  const reply = (await node.call('CONFIG', 'GET', name)) as string[];
  return reply[1] ?? '';
}

/** What makes `client` (each master, on a cluster) non-durable; [] when durable. Throws when it can't tell. */
export async function durabilityProblems(client: RedisClient): Promise<string[]> {
  const nodes: Redis[] = client instanceof Cluster ? client.nodes('master') : [client];
  const problems: string[] = [];
  for (const node of nodes) {
    const where = nodes.length > 1 ? `${node.options.host}:${node.options.port}: ` : '';
    const [aof, save, policy] = await Promise.all(
      ['appendonly', 'save', 'maxmemory-policy'].map((n) => configValue(node, n)),
    );
    if (aof !== 'yes' && save.trim() === '')
      problems.push(`${where}no persistence (appendonly no, no save points)`);
    if (policy !== 'noeviction') problems.push(`${where}maxmemory-policy is ${policy}, not noeviction`);
  }
  return problems;
}

/**
 * Check at start: throws ConfigError naming the problems and the fix when `require`, else logs them as an
 * error. A Redis that refuses CONFIG (some managed services) cannot be checked: a warning says so.
 */
export async function checkRedisDurability(
  client: RedisClient,
  require: boolean,
  log: Logger,
): Promise<void> {
  let problems: string[];
  try {
    problems = await durabilityProblems(client);
  } catch (err) {
    log.warn(
      'cannot check whether Redis is durable (CONFIG GET refused); make sure it persists and never evicts',
      {
        error: errorMessage(err),
      },
    );
    return;
  }
  if (problems.length === 0) return;
  const message = `Redis is not durable: ${problems.join('; ')}. Fix: ${DURABILITY_FIX}`;
  if (require) throw new ConfigError(message);
  log.error(`${message} (running anyway: REDIS_REQUIRE_DURABLE=false)`);
}

/** checkRedisDurability once `client` connects within `waitMs`; a Redis not reachable yet is only logged. */
export async function checkDurabilityWhenReachable(
  client: RedisClient,
  require: boolean,
  log: Logger,
  waitMs = 5_000,
): Promise<void> {
  try {
    await waitForRedis(client, waitMs);
  } catch (err) {
    log.warn('Redis is not reachable yet: its durability is not checked', { error: errorMessage(err) });
    return;
  }
  await checkRedisDurability(client, require, log);
}
