/**
 * The scaffold both workers stand on: a BullMQ Worker whose processor is instrumented (queue wait and job
 * duration by outcome in the metrics), whose failures cross Redis as the error's data in JSON (encodeFailure) so
 * the API can map them to HTTP statuses, with errors the caller caused marked unrecoverable (no retry), and
 * a close() that waits for running jobs (bounded) before releasing what the worker holds.
 */
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { errorData, errorMessage, type ErrorData } from '../errors.js';
import type { Logger } from '../ops/log.js';
import { metrics } from '../ops/metrics.js';
import { PERMANENT_FAILURES, decodeFailure, encodeFailure } from './contracts.js';
import { closeRedis, closeWhileConnected, dropQueues, keyPrefix, type RedisClient } from './redis.js';

export interface QueueWorkerOptions<D, R> {
  queue: string;
  /** A `worker`-role connection (core/queue/redis.ts); closed with the worker. */
  connection: RedisClient;
  /** QUEUE_PREFIX (hash-tagged here, see keyPrefix). */
  prefix: string;
  concurrency: number;
  /** Job lock duration (JOB_LOCK_MS): a job whose worker died is back in the queue within about twice this. */
  lockMs: number;
  /** Delay before retry n (attempts made so far) of a job with `backoff: {type: 'custom'}`. */
  backoffMs?: (attemptsMade: number) => number;
  log: Logger;
  /**
   * Run one job: `log` carries the job id and the request id that made it, `token` is the job's lock
   * token (for moveToDelayed), `signal` aborts when the job is cancelled (Worker.cancelJob).
   */
  process(
    job: Job<D, R>,
    log: Logger,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<R>;
  /** Called once a job has failed for good (no attempts left, or unrecoverable), with its error. */
  onFinalFailure?(job: Job<D, R>, failure: ErrorData): Promise<void>;
}

export interface QueueWorker<D, R> {
  worker: Worker<D, R>;
  /** Stop taking jobs, wait up to 10 s for running ones (then force), close the connection. */
  close(): Promise<void>;
}

/**
 * The error BullMQ records for a failed job: its message is the error's data as JSON (encodeFailure), and
 * it is unrecoverable (no retry) when the input caused it.
 */
export function failureFor(err: unknown): Error {
  if (err instanceof UnrecoverableError) return err;
  const data = errorData(err);
  const message = encodeFailure(data);
  return PERMANENT_FAILURES.has(data.code) ? new UnrecoverableError(message) : new Error(message);
}

export async function startQueueWorker<D, R>(opts: QueueWorkerOptions<D, R>): Promise<QueueWorker<D, R>> {
  const m = metrics();
  const { queue, log } = opts;
  const processor = async (job: Job<D, R>, token?: string, signal?: AbortSignal): Promise<R> => {
    const t0 = performance.now();
    const waited = Math.max(0, (job.processedOn ?? Date.now()) - job.timestamp);
    m.jobQueueWait.observe({ queue }, waited / 1000);
    const requestId = (job.data as { requestId?: unknown }).requestId;
    const jobLog = log.child({ jobId: job.id, ...(typeof requestId === 'string' && { requestId }) });
    try {
      const result = await opts.process(job, jobLog, token, signal);
      m.jobDuration.observe({ queue, outcome: 'completed' }, (performance.now() - t0) / 1000);
      return result;
    } catch (err) {
      if (err instanceof DelayedError) throw err; // moved back to the queue on purpose, not a failure
      m.jobDuration.observe({ queue, outcome: 'failed' }, (performance.now() - t0) / 1000);
      const failure = failureFor(err);
      const data = decodeFailure(failure.message);
      const final = failure instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      jobLog.warn(`${queue} job failed`, {
        attempt: job.attemptsMade + 1,
        final,
        code: data.code,
        error: data.message,
      });
      if (final) await opts.onFinalFailure?.(job, data).catch(() => undefined);
      throw failure;
    }
  };
  const backoffMs = opts.backoffMs;
  const worker = new Worker<D, R>(queue, processor, {
    connection: opts.connection,
    prefix: keyPrefix(opts.prefix),
    concurrency: opts.concurrency,
    lockDuration: opts.lockMs,
    stalledInterval: opts.lockMs,
    // A job whose worker died goes back to the queue; only one that kills its workers again and again fails.
    maxStalledCount: 3,
    ...(backoffMs && { settings: { backoffStrategy: (attemptsMade: number) => backoffMs(attemptsMade) } }),
  });
  worker.on('error', (err) => log.warn(`${queue} worker error`, { error: errorMessage(err) }));
  await worker.waitUntilReady().catch(() => undefined);
  return {
    worker,
    async close() {
      // Running jobs get up to 10 s, unless Redis is gone (nothing could be recorded): then force.
      if (!(await closeWhileConnected(() => worker.close(), opts.connection, 10_000))) {
        dropQueues([worker]);
        void worker.close(true).catch(() => undefined);
      }
      await closeRedis(opts.connection);
    },
  };
}
