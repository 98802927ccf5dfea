/**
 * Blend jobs as the API sees them: enqueue one per query (admission control, see query-control.ts), wait
 * for it within QUERY_TIMEOUT_MS (504, and the job is cancelled), map a failed job back to an HTTP error,
 * and present a result with its total time.
 */
import { randomUUID } from 'node:crypto';
import type { Job } from 'bullmq';
import { errorMessage } from '../core/errors.js';
import type { Response } from 'express';
import {
  BLEND_JOB,
  decodeFailure,
  keepJobs,
  type BlendJobData,
  type BlendJobResult,
  type BlendProgress,
} from '../core/queue/contracts.js';
import { redisCall } from '../core/queue/redis.js';
import { observeServed } from '../core/ops/serving-metrics.js';
import { roundMs } from '../core/util/time.js';
import type { ApiDeps } from './deps.js';
import { HttpError, STATUS, fieldOf } from './errors.js';
import { admit, cancelQuery, observeWorkerMs } from './query-control.js';
import type { QueryReplyBody } from './replies.js';

export type QueryJob = Job<BlendJobData, BlendJobResult>;

export function newJobId(): string {
  return randomUUID();
}

/** Enqueue a query, unless QUERY_QUEUE_LIMIT queries already wait (then 429, nothing enqueued). */
export async function enqueueQuery(deps: ApiDeps, jobId: string, data: BlendJobData): Promise<QueryJob> {
  await admit(deps);
  return redisCall(
    () => deps.blendQueue.add(BLEND_JOB, data, { jobId, attempts: 1, ...keepJobs(deps.config.jobHistory) }),
    'Redis (blend queue)',
  );
}

/**
 * Wait for a blend job, bounded by QUERY_TIMEOUT_MS: on timeout (504) or when `signal` aborts (the client
 * went away) the job is cancelled — removed if it still waits, its worker told to stop if it runs.
 */
export async function waitForJob(
  deps: ApiDeps,
  job: QueryJob,
  jobId: string,
  signal?: AbortSignal,
): Promise<BlendJobResult> {
  const timeoutMs = deps.config.queryTimeoutMs;
  const finished = job.waitUntilFinished(deps.blendEvents, timeoutMs + 1_000);
  finished.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  let onAbort = () => undefined as void;
  const stopped = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new HttpError(504, 'TIMEOUT', `the query did not finish within ${timeoutMs} ms and was cancelled`, {
            jobId,
          }),
        ),
      timeoutMs,
    );
    onAbort = () =>
      reject(new HttpError(499, 'CANCELLED', 'the client went away: the query was cancelled', { jobId }));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
  const t0 = performance.now();
  try {
    const result = await Promise.race([finished, stopped]);
    observeServed(result, (performance.now() - t0) / 1000);
    return result;
  } catch (err) {
    if (!(err instanceof HttpError)) throw jobFailure(err, jobId);
    await cancelQuery(deps, jobId).catch((e: unknown) =>
      deps.log?.warn('could not cancel a query', { jobId, error: errorMessage(e) }),
    );
    throw err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/** A failed job's error (`CODE: message`, see encodeFailure) as the HTTP error its code maps to. */
export function jobFailure(err: unknown, jobId: string): HttpError {
  const { code, message } = decodeFailure(errorMessage(err));
  const status = STATUS[code] ?? 500;
  return new HttpError(status, code, status === 500 ? `the query failed: ${message}` : message, {
    jobId,
    ...(status === 400 && fieldOf(message) && { field: fieldOf(message) }),
  });
}

/** A finished job's result with the request's total time, as the query endpoints return it. */
export function presentResult(result: BlendJobResult, jobId: string, t0: number): QueryReplyBody {
  observeWorkerMs(result.timings.workerMs);
  return { jobId, ...result, timings: { ...result.timings, totalMs: roundMs(performance.now() - t0) } };
}

/** What a streamed job tells its caller as it runs. */
export interface StreamHooks {
  /** The job is enqueued (write response headers now: a Redis error before this is still a JSON reply). */
  started(): void;
  /** New answer text. */
  delta(text: string, tokens: number): void;
}

/**
 * Enqueue a streaming job and relay its text as it is generated; resolves with the result once the job
 * finishes (any text the progress events did not carry is relayed first).
 */
export async function runStreamed(
  deps: ApiDeps,
  jobId: string,
  data: BlendJobData,
  hooks: StreamHooks,
  signal?: AbortSignal,
): Promise<BlendJobResult> {
  let streamed = '';
  const onProgress = ({ jobId: id, data: p }: { jobId: string; data: unknown }) => {
    if (id !== jobId || typeof p !== 'object' || p === null) return;
    const { delta, tokens } = p as BlendProgress;
    streamed += delta;
    hooks.delta(delta, tokens);
  };
  // Listen before the job exists, so no progress event is missed.
  deps.blendEvents.on('progress', onProgress);
  try {
    const job = await enqueueQuery(deps, jobId, data);
    hooks.started();
    const result = await waitForJob(deps, job, jobId, signal);
    if (result.answer.length > streamed.length && result.answer.startsWith(streamed)) {
      hooks.delta(result.answer.slice(streamed.length), result.tokens.length);
    }
    return result;
  } finally {
    deps.blendEvents.off('progress', onProgress);
  }
}

/** Aborts when the client goes away before its reply is complete (a closed connection, a dropped stream). */
export function clientGone(res: Response): AbortSignal {
  const ac = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  return ac.signal;
}
