/**
 * A chunk's state in the index (pending → ready | failed, see keys.ts) as the precompute worker and the
 * reconciler move it: each change is one Lua script (lua/), so it is atomic with the pending and failed
 * indexes.
 */
import { PERMANENT_FAILURES, decodeFailure, type PrecomputeJobResult } from '../queue/contracts.js';
import { redisCall } from '../queue/redis.js';
import type { IndexHandle } from './index-handle.js';
import type { ChunkJob } from './precompute-jobs.js';

export class ChunkLifecycle {
  constructor(private readonly h: IndexHandle) {}

  /** Under the chunk's lock: still referenced? If not, it leaves the pending state (precompute-begin.lua). */
  async beginPrecompute(key: string): Promise<boolean> {
    const { keys, script } = this.h;
    const ks = [keys.refs(key), keys.chunk(key), keys.pending];
    return (await redisCall(() => script('precompute-begin', ks, [key]))) === 1;
  }

  async markReady(
    key: string,
    fingerprint: string,
    result: Pick<PrecomputeJobResult, 'bytes' | 'written'>,
  ): Promise<void> {
    const { keys, script } = this.h;
    const ks = [keys.chunk(key), keys.pending, keys.failed];
    const now = new Date().toISOString();
    await redisCall(() => script('mark-ready', ks, [fingerprint, result.bytes, result.written, now, key]));
  }

  async markFailed(key: string, message: string): Promise<void> {
    const { keys, script } = this.h;
    const ks = [keys.chunk(key), keys.pending, keys.failed];
    const args = [message.slice(0, 1000), new Date().toISOString(), key, Date.now()];
    await redisCall(() => script('mark-failed', ks, args));
  }

  /** Run `fn` holding the chunk's lock; null (fn not run) when another process holds it past `waitMs`. */
  withLock<T>(key: string, waitMs: number, fn: () => Promise<T>): Promise<{ value: T } | null> {
    return this.h.locks.tryWith(this.h.keys.lock(key), waitMs, fn);
  }

  /**
   * The jobs of up to `batch` chunks pending since before `before`, and `touch`, which re-scores them as
   * enqueued now and drops from the pending index the entries no longer pending: call it once the jobs
   * are enqueued, so a failed enqueue leaves them due for the next round.
   */
  async stalePending(
    before: number,
    batch: number,
  ): Promise<{ jobs: ChunkJob[]; touch: () => Promise<void> }> {
    const { redis, keys } = this.h;
    const stale = await redisCall(() => redis.zrangebyscore(keys.pending, '-inf', before, 'LIMIT', 0, batch));
    const p = redis.pipeline();
    for (const k of stale) p.hmget(keys.chunk(k), 'state', 'gen', 'tokens', 'fp', 'salt');
    const replies = stale.length ? ((await redisCall(() => p.exec())) ?? []) : [];
    const jobs: ChunkJob[] = [];
    const touch = redis.pipeline();
    const now = Date.now();
    stale.forEach((key, i) => {
      const [state, gen, tokens, fp, salt] = (replies[i]?.[1] ?? []) as (string | null)[];
      if (state !== 'pending' || !tokens || !fp) {
        touch.zrem(keys.pending, key);
        return;
      }
      const data = { key, fingerprint: fp, tokenIds: JSON.parse(tokens) as number[], salt: salt ?? '' };
      jobs.push({ gen: Number(gen ?? 0), data });
      touch.zadd(keys.pending, now, key);
    });
    return { jobs, touch: async () => void (stale.length && (await redisCall(() => touch.exec()))) };
  }

  /** Up to `batch` chunks failed since before `before`. */
  failedBefore(before: number, batch: number): Promise<string[]> {
    const { redis, keys } = this.h;
    return redisCall(() => redis.zrangebyscore(keys.failed, '-inf', before, 'LIMIT', 0, batch));
  }

  /**
   * A failed chunk's next generation and its job (retry-failed.lua), or null: a failure the input caused
   * stays failed and leaves the failed index, never looked at again.
   */
  async retry(key: string, now: number): Promise<ChunkJob | null> {
    const { redis, keys, script } = this.h;
    const [error, tokens, fp, salt] = await redisCall(() =>
      redis.hmget(keys.chunk(key), 'error', 'tokens', 'fp', 'salt'),
    );
    if (PERMANENT_FAILURES.has(decodeFailure(error ?? '').code) || !tokens || !fp) {
      await redisCall(() => redis.zrem(keys.failed, key));
      return null;
    }
    const gen = (await redisCall(() =>
      script(
        'retry-failed',
        [keys.chunk(key), keys.pending, keys.failed],
        [key, now, new Date(now).toISOString()],
      ),
    )) as number | null;
    if (gen === null) return null;
    return {
      gen,
      data: { key, fingerprint: fp, tokenIds: JSON.parse(tokens) as number[], salt: salt ?? '' },
    };
  }
}
