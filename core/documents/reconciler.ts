/**
 * The reconciler: what makes precompute self-healing. Every round (RECONCILE_INTERVAL_MS, in precompute
 * workers; one worker at a time, under a lock) it
 * - re-enqueues chunks pending for a while: a chunk whose job was lost (an API that died between
 *   indexing and enqueueing, a job that ended while an ingest took the chunk up again) gets its job back,
 *   and one whose job still exists is left alone (the job id is the same, BullMQ keeps the existing job);
 * - gives chunks that failed for a transient reason (store or Redis trouble) another generation, once
 *   they have been failed for a while; failures the input caused stay failed;
 * - retries garbage collection of chunks left in the gc set.
 */
import { errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../ops/log.js';
import type { DocumentService } from './documents.js';

export interface ReconcilerOptions {
  /** A chunk pending this long is re-enqueued (default 10 s). */
  staleMs?: number;
  /** A chunk failed this long is retried (default 60 s). */
  failedRetryMs?: number;
  /** Chunks looked at per round and index (default 1000). */
  batch?: number;
  log?: Logger;
}

export interface ReconcileRound {
  /** False when another worker held the round's lock. */
  ran: boolean;
  requeued: number;
  retried: number;
  collected: number;
}

export class Reconciler {
  private readonly staleMs: number;
  private readonly failedRetryMs: number;
  private readonly batch: number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly docs: DocumentService,
    opts: ReconcilerOptions = {},
  ) {
    this.staleMs = opts.staleMs ?? 10_000;
    this.failedRetryMs = opts.failedRetryMs ?? 60_000;
    this.batch = opts.batch ?? 1_000;
    this.log = opts.log ?? silentLogger;
  }

  /** Run a round every `intervalMs` (0: never). */
  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => {
      this.running = this.round().catch((err: unknown) =>
        this.log.warn('reconciler round failed', { error: errorMessage(err) }),
      );
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  async round(): Promise<ReconcileRound> {
    const r = await this.docs.locks.tryWith(this.docs.keys.reconcile, 0, async () => {
      const collected = await this.docs.gc.sweep();
      const requeued = await this.requeuePending();
      const retried = await this.retryFailed();
      return { ran: true, requeued, retried, collected };
    });
    const round = r?.value ?? { ran: false, requeued: 0, retried: 0, collected: 0 };
    if (round.requeued + round.retried + round.collected > 0) this.log.info('reconciled', { ...round });
    return round;
  }

  /** Enqueue (again) every chunk pending longer than staleMs; drop index entries no longer pending. */
  private async requeuePending(): Promise<number> {
    const { jobs, touch } = await this.docs.lifecycle.stalePending(Date.now() - this.staleMs, this.batch);
    await this.docs.jobs.enqueue(jobs);
    await touch();
    return jobs.length;
  }

  /**
   * Retry every chunk failed for a transient reason now, however recently it failed (the precompute
   * worker calls this when the store answers again after an outage). Returns how many; 0 when another
   * worker held the reconciler's lock.
   */
  async retryFailedNow(): Promise<number> {
    const r = await this.docs.locks.tryWith(this.docs.keys.reconcile, 1_000, () => this.retryFailed(0));
    if (r && r.value > 0) this.log.info('reconciled', { retried: r.value });
    return r?.value ?? 0;
  }

  /** Give each chunk failed longer than `minAgeMs` for a transient reason a new generation and job. */
  private async retryFailed(minAgeMs = this.failedRetryMs): Promise<number> {
    const states = this.docs.lifecycle;
    const now = Date.now();
    let retried = 0;
    for (const key of await states.failedBefore(now - minAgeMs, this.batch)) {
      const job = await states.retry(key, now);
      if (!job) continue;
      await this.docs.jobs.enqueue([job]);
      retried++;
    }
    return retried;
  }
}
