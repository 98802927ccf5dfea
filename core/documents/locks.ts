/**
 * Short-lived Redis locks (SET NX PX with a random token), renewed while held and released by their
 * holder only. A process that dies holding one frees it within LOCK_TTL_MS, so work it left behind (a
 * chunk's precompute, a document's write) is taken up again seconds later, not minutes.
 */
import { randomBytes } from 'node:crypto';
import { UnavailableError, errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../ops/log.js';
import { redisCall, type RedisClient } from '../queue/redis.js';
import type { ScriptCaller } from './scripts.js';

/** How long a lock outlives its holder's last renewal. */
export const LOCK_TTL_MS = 10_000;
const POLL_MS = 50;

export class RedisLocks {
  /** Renewed every third of the TTL: two renewals may fail before the lock is lost. */
  private readonly renewEveryMs: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly script: ScriptCaller,
    private readonly log: Logger = silentLogger,
    /** The TTL of a lock (tests shorten it to see renewal work). */
    private readonly ttlMs: number = LOCK_TTL_MS,
  ) {
    this.renewEveryMs = ttlMs / 3;
  }

  /** Take `lock`, waiting up to `waitMs`; the release function, or null when another holder kept it. */
  async acquire(lock: string, waitMs: number): Promise<(() => Promise<void>) | null> {
    const token = randomBytes(12).toString('hex');
    const deadline = Date.now() + waitMs;
    for (;;) {
      const ok = await redisCall(() => this.redis.set(lock, token, 'PX', this.ttlMs, 'NX'));
      if (ok === 'OK') break;
      if (Date.now() >= deadline) return null;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const renew = setInterval(() => {
      this.script('extend-lock', [lock], [token, this.ttlMs]).then(
        (kept) => kept === 0 && this.log.warn('lost a lock while holding it', { lock }),
        (err: unknown) => this.log.warn('could not renew a lock', { lock, error: errorMessage(err) }),
      );
    }, this.renewEveryMs);
    return async () => {
      clearInterval(renew);
      await this.script('unlock', [lock], [token]).catch(() => undefined);
    };
  }

  /** Run `fn` holding `lock`; null (fn not run) when it could not be taken within `waitMs`. */
  async tryWith<T>(lock: string, waitMs: number, fn: () => Promise<T>): Promise<{ value: T } | null> {
    const release = await this.acquire(lock, waitMs);
    if (!release) return null;
    try {
      return { value: await fn() };
    } finally {
      await release();
    }
  }

  /** Run `fn` holding `lock`; UnavailableError naming `what` when it could not be taken within `waitMs`. */
  async with<T>(lock: string, waitMs: number, what: string, fn: () => Promise<T>): Promise<T> {
    const r = await this.tryWith(lock, waitMs, fn);
    if (!r) throw new UnavailableError(`${what} is locked by another process; try again`);
    return r.value;
  }
}
