/**
 * Keeping the query queue honest: admission control (a bounded queue of waiting queries, 429 beyond it)
 * and cancellation (a query whose client went away or timed out is removed from the queue, or its worker
 * told to stop), so capacity goes to queries someone still waits for.
 */
import { Job } from 'bullmq';
import {
  CANCEL_MARK_MS,
  blendCancelChannel,
  blendCancelledKey,
  type BlendJobData,
  type BlendJobResult,
} from '../core/queue/contracts.js';
import { keyPrefix, redisCall } from '../core/queue/redis.js';
import type { ApiDeps } from './deps.js';
import { HttpError } from './errors.js';

/** Mean time a blend worker spends on a query, as this process has seen them (for Retry-After). */
let meanWorkerMs = 1_000;

export function observeWorkerMs(ms: number): void {
  meanWorkerMs = 0.9 * meanWorkerMs + 0.1 * ms;
}

/**
 * Admission control: the queue of waiting queries is bounded, so a burst is answered at once with 429
 * and `Retry-After` (about how long the waiting queries take one worker) instead of with answers that
 * come too late to matter. The count is read, not reserved: API processes racing for the last places may
 * overshoot the limit by a few.
 */
export async function admit(deps: ApiDeps): Promise<void> {
  const limit = deps.config.queryQueueLimit;
  const waiting = await redisCall(() => deps.blendQueue.getWaitingCount(), 'Redis (blend queue)');
  if (waiting < limit) return;
  const retryAfter = Math.min(60, Math.max(1, Math.ceil((waiting * meanWorkerMs) / 1000)));
  throw new HttpError(
    429,
    'OVERLOADED',
    `${waiting} queries are waiting (QUERY_QUEUE_LIMIT ${limit}); retry in ${retryAfter} s`,
    {},
    { 'Retry-After': String(retryAfter) },
  );
}

/**
 * Cancel a query job: mark it (a worker that takes it later drops it), remove it if it still waits, and
 * otherwise tell the blend workers (the one running it aborts it at its next step).
 */
export async function cancelQuery(deps: ApiDeps, jobId: string): Promise<void> {
  const prefix = keyPrefix(deps.config.queuePrefix);
  await redisCall(() => deps.redis.set(blendCancelledKey(prefix, jobId), '1', 'PX', CANCEL_MARK_MS));
  const job = await redisCall(() => Job.fromId<BlendJobData, BlendJobResult>(deps.blendQueue, jobId));
  if (!job || (await job.isCompleted()) || (await job.isFailed())) return;
  if ((await job.isWaiting()) || (await job.isDelayed())) {
    const removed = await job.remove().then(
      () => true,
      () => false, // taken by a worker meanwhile: stop it instead
    );
    if (removed) return;
  }
  await redisCall(() => deps.redis.publish(blendCancelChannel(prefix), jobId));
}
