/**
 * Readiness: can this API answer, and would its answers be kept? Each check is 'ok' or why not:
 * - redis: reachable, accepting writes (a full Redis under noeviction answers PING but refuses every
 *   write: a probe key is set, with a short TTL), and durable (persistence, noeviction; see
 *   core/queue/durability.ts);
 * - store: writable — a small object is written and deleted (a full or read-only store fails it);
 * - model: the tokenizer and fingerprint are loaded;
 * - workers: at least one blend worker is connected to the queue;
 * - queue: fewer than QUERY_QUEUE_LIMIT queries wait.
 * Store and durability probes are cached briefly, so frequent probes cost little; a refused Redis write seen
 * by any request drops the cached write probe, so /readyz says 503 at once and until a probe write succeeds.
 */
import { randomUUID } from 'node:crypto';
import { errorMessage } from '../core/errors.js';
import { durabilityProblems, DURABILITY_FIX } from '../core/queue/durability.js';
import { keyPrefix, onRedisWriteRefused, pingRedis } from '../core/queue/redis.js';
import { withTimeout } from '../core/util/time.js';
import { modelState, type ApiDeps } from './deps.js';
import { withoutPaths } from './middleware/hardening.js';

const STORE_PROBE_TTL_MS = 2_000;
const REDIS_WRITE_TTL_MS = 2_000;
const DURABILITY_TTL_MS = 30_000;

/**
 * A value recomputed at most once per `ttlMs` (concurrent callers share one computation); `stale()` makes
 * the next call recompute.
 */
function cached(ttlMs: number, compute: () => Promise<string>): (() => Promise<string>) & { stale(): void } {
  let value: Promise<string> | null = null;
  let at = 0;
  const get = () => {
    if (!value || Date.now() - at > ttlMs) {
      at = Date.now();
      value = compute();
    }
    return value;
  };
  return Object.assign(get, {
    stale: () => {
      value = null;
    },
  });
}

const outcome = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (err: unknown) => withoutPaths(errorMessage(err)),
  );

export function readinessChecks(deps: ApiDeps): () => Promise<Record<string, string>> {
  const probeKey = `health/${randomUUID()}`;
  const store = cached(STORE_PROBE_TTL_MS, () =>
    outcome(
      withTimeout(
        (async () => {
          await deps.store.put(probeKey, Buffer.from('ok'));
          await deps.store.delete(probeKey);
        })(),
        3_000,
        'object store write probe',
      ),
    ).then((r) => (r === 'ok' ? r : `not writable: ${r}`)),
  );
  const durable = cached(DURABILITY_TTL_MS, async () => {
    if (!deps.config.redisRequireDurable) return 'ok';
    const problems = await durabilityProblems(deps.redis).catch(() => [] as string[]);
    return problems.length === 0 ? 'ok' : `not durable: ${problems.join('; ')}. Fix: ${DURABILITY_FIX}`;
  });
  const writeKey = `${keyPrefix(deps.config.queuePrefix)}:readyz:${randomUUID()}`;
  const writable = cached(REDIS_WRITE_TTL_MS, () =>
    outcome(withTimeout(deps.redis.set(writeKey, '1', 'PX', 10_000), 2_000, 'Redis write probe')).then((r) =>
      r === 'ok' ? r : `refuses writes: ${r}`,
    ),
  );
  // A write the service just saw refused (OOM, READONLY, MISCONF) is news the cached probe may not have:
  // the next check probes again, and stays failing until a probe write succeeds.
  // Held weakly: a closed app's checks are not kept alive by the process-wide listener list.
  const probe = new WeakRef(writable);
  const unsubscribe = onRedisWriteRefused(() => {
    const w = probe.deref();
    if (w) w.stale();
    else unsubscribe();
  });
  const redis = async () => {
    const ping = await outcome(pingRedis(deps.redis, 2_000));
    if (ping !== 'ok') return ping;
    const w = await writable();
    return w === 'ok' ? durable() : w;
  };
  return async () => {
    const [r, s, workers, queue] = await Promise.all([redis(), store(), blendWorkers(deps), queueRoom(deps)]);
    return { redis: r, store: s, model: modelState(deps), workers, queue };
  };
}

async function blendWorkers(deps: ApiDeps): Promise<string> {
  try {
    const n = await withTimeout(deps.blendQueue.getWorkersCount(), 2_000, 'listing blend workers');
    return n > 0 ? 'ok' : 'no live blend worker';
  } catch (err) {
    return `unknown: ${errorMessage(err)}`;
  }
}

async function queueRoom(deps: ApiDeps): Promise<string> {
  try {
    const waiting = await withTimeout(deps.blendQueue.getWaitingCount(), 2_000, 'counting queued queries');
    const limit = deps.config.queryQueueLimit;
    return waiting < limit ? 'ok' : `full: ${waiting} queries waiting (QUERY_QUEUE_LIMIT ${limit})`;
  } catch (err) {
    return `unknown: ${errorMessage(err)}`;
  }
}
