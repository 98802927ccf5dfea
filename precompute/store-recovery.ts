/**
 * Precompute jobs retried as soon as the object store answers again. Failed attempts back off
 * exponentially (precomputeBackoffMs: 1 s doubling to 60 s), which spares a failing store, but the retry a
 * job schedules at its last failure is about as far away as the store has been failing (12–20 s after
 * 15 s, up to 75 s after a minute): waiting that out after the store is back left acknowledged documents
 * pending long after an outage. So a job whose attempt failed on the store (unavailable, or refusing
 * writes) is noted, the store is probed every `probeMs` (a small write and delete, as readiness does: a
 * store that answers reads but refuses writes is still down for precompute), and the first probe that
 * succeeds promotes every noted job still waiting out its backoff, so it runs at once. A noted job that is gone failed for
 * good (no attempts left after a long outage): `retryFailed` (the reconciler's) gives its chunk a new job
 * at once, instead of after its 60 s wait and the next reconciler round. A store that fails again within
 * FLAP_WINDOW_MS of answering is probed half as often each time (up to MAX_PROBE_MS), so one that flaps
 * is not hammered by jobs retried on every brief answer.
 */
import { randomUUID } from 'node:crypto';
import { Job, type Queue } from 'bullmq';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/ops/log.js';
import type { ObjectStore } from '../core/storage/types.js';

/** How often a store that failed an attempt is probed. */
export const STORE_PROBE_MS = 1_000;
/** A store failing again this soon after a recovery counts as flapping. */
export const FLAP_WINDOW_MS = 10_000;
/** The longest probe period (a store that keeps flapping). */
export const MAX_PROBE_MS = 30_000;

export class StoreRecovery {
  /** Ids of jobs whose last attempt failed on the store, to promote once it answers. */
  private readonly noted = new Set<string>();
  private probing: Promise<void> | null = null;
  private closed = false;
  private wake: (() => void) | null = null;
  private readonly probeKey = `health/precompute-${randomUUID()}`;
  private lastRecovery = 0;
  private delayMs: number;

  constructor(
    private readonly store: ObjectStore,
    private readonly queue: Queue,
    private readonly log: Logger,
    /** Retry the chunks that failed for good on a transient error (Reconciler.retryFailedNow). */
    private readonly retryFailed: () => Promise<unknown>,
    private readonly probeMs = STORE_PROBE_MS,
  ) {
    this.delayMs = probeMs;
  }

  /** The probe period for failures noted now: doubled when the store failed again soon after answering. */
  private nextDelay(): number {
    const flapping = Date.now() - this.lastRecovery < FLAP_WINDOW_MS;
    this.delayMs = flapping ? Math.min(this.delayMs * 2, MAX_PROBE_MS) : this.probeMs;
    return this.delayMs;
  }

  /** Job `jobId`'s attempt failed on the store: probe it until it answers. */
  storeFailed(jobId: string): void {
    if (this.closed) return;
    this.noted.add(jobId);
    this.probing ??= this.probeUntilBack()
      .catch((err: unknown) => this.log.warn('store recovery probe failed', { error: errorMessage(err) }))
      .finally(() => {
        this.probing = null;
      });
  }

  private async probeUntilBack(): Promise<void> {
    let delay = this.nextDelay();
    while (!this.closed && this.noted.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (this.closed) return;
      try {
        await this.store.put(this.probeKey, Buffer.from('ok'));
        await this.store.delete(this.probeKey);
      } catch {
        continue; // still down; the jobs keep their backoff meanwhile
      }
      // Jobs noted while promoting stay noted for the next round.
      const ids = [...this.noted];
      this.noted.clear();
      this.lastRecovery = Date.now();
      const { promoted, gone } = await this.promote(ids);
      if (gone > 0) await this.retryFailed();
      this.log.info('object store answers again: precompute jobs retried now', { promoted, gone });
      if (this.noted.size > 0) delay = this.nextDelay(); // failed again meanwhile
    }
  }

  /** Promote those of `ids` that wait out a backoff (a job already running is left alone). */
  private async promote(ids: string[]): Promise<{ promoted: number; gone: number }> {
    let promoted = 0;
    let gone = 0;
    for (const id of ids) {
      const job = await Job.fromId(this.queue, id);
      const state = job ? await job.getState() : 'unknown';
      if (!job || state === 'failed' || state === 'completed' || state === 'unknown') {
        gone++; // failed for good, or done since (kept in the history, or removed from it)
        continue;
      }
      try {
        await job.promote();
        promoted++;
      } catch {
        // not in the delayed state any more
      }
    }
    return { promoted, gone };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    await this.probing;
  }
}
