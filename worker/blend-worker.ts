/**
 * The blend worker: consumes `blend` jobs (one per query). Cache loading (LRU → disk → store, layer by
 * layer), the CacheBlend prefill and decoding all run on the inference thread; this thread only moves the
 * job, relays streamed text as job progress, and records metrics.
 */
import { MessageChannel } from 'node:worker_threads';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Config } from '../core/config/index.js';
import { CacheBlendError, errorMessage } from '../core/errors.js';
import {
  BLEND_QUEUE,
  encodeFailure,
  type BlendJobData,
  type BlendJobResult,
  type BlendProgress,
} from '../core/queue/contracts.js';
import { closeRedis, createRedis } from '../core/queue/redis.js';
import { withTimeout } from '../core/util/timeout.js';
import type { EngineInfo, EngineThreadInit } from '../core/inference/engine-handlers.js';
import { workerEngineThread, type EngineCaller } from '../core/inference/engine-thread.js';
import { silentLogger, type Logger } from '../core/ops/log.js';
import { metrics, observeBlend } from '../core/ops/metrics.js';

export interface BlendWorkerOptions {
  config: Config;
  log?: Logger;
  /** Share an inference thread; by default the worker starts and owns one. */
  thread?: EngineCaller;
  threadInit?: Partial<EngineThreadInit>;
}

export interface BlendWorker {
  worker: Worker<BlendJobData, BlendJobResult>;
  thread: EngineCaller;
  info: EngineInfo;
  close(): Promise<void>;
}

/** Errors the caller caused: retrying will not help. */
const UNRECOVERABLE = new Set(['INVALID_ARGUMENT', 'NOT_FOUND', 'KV_MISMATCH', 'UNSUPPORTED_MODEL']);

export async function startBlendWorker(opts: BlendWorkerOptions): Promise<BlendWorker> {
  const { config } = opts;
  const log = opts.log ?? silentLogger;
  const { thread, ownThread } = await workerEngineThread(config, opts, log);
  const info = await thread.call('info', []);
  const connection = createRedis(config.redisUrl, 'worker');
  const m = metrics();

  const run = async (job: Job<BlendJobData, BlendJobResult>): Promise<BlendJobResult> => {
    const started = Date.now();
    const queueMs = Math.max(0, (job.processedOn ?? started) - job.timestamp);
    m.jobQueueWait.observe({ queue: BLEND_QUEUE }, queueMs / 1000);
    const channel = job.data.stream ? new MessageChannel() : null;
    // Coalesce streamed deltas into as few progress updates as Redis keeps up with, in order.
    let pending: BlendProgress | null = null;
    let flushing: Promise<void> = Promise.resolve();
    let inFlight = false;
    const flush = async () => {
      inFlight = true;
      while (pending) {
        const p: BlendProgress = pending;
        pending = null;
        await job.updateProgress(p as unknown as object).catch(() => undefined);
      }
      inFlight = false;
    };
    channel?.port1.on('message', (p: BlendProgress) => {
      pending = pending ? { delta: pending.delta + p.delta, tokens: p.tokens } : p;
      if (!inFlight) flushing = flush();
    });
    try {
      const r = await thread.call(
        'blend',
        channel ? [job.data, channel.port2] : [job.data],
        channel ? [channel.port2] : [],
      );
      if (channel) {
        await new Promise((resolve) => setImmediate(resolve)); // let the last port messages arrive
        await flushing;
        if (pending) await flush();
      }
      const result: BlendJobResult = {
        ...r,
        timings: { ...r.timings, queueMs, workerMs: Date.now() - started },
      };
      observeBlend(result);
      return result;
    } finally {
      channel?.port1.close();
    }
  };

  const worker = new Worker<BlendJobData, BlendJobResult>(
    BLEND_QUEUE,
    async (job) => {
      const t0 = performance.now();
      try {
        const result = await run(job);
        m.jobDuration.observe({ queue: BLEND_QUEUE, outcome: 'completed' }, (performance.now() - t0) / 1000);
        return result;
      } catch (err) {
        m.jobDuration.observe({ queue: BLEND_QUEUE, outcome: 'failed' }, (performance.now() - t0) / 1000);
        const code = err instanceof CacheBlendError ? err.code : 'INTERNAL';
        const message = encodeFailure(code, errorMessage(err));
        log.warn('blend job failed', { jobId: job.id, error: message });
        throw UNRECOVERABLE.has(code) ? new UnrecoverableError(message) : new Error(message);
      }
    },
    { connection, prefix: config.queuePrefix, concurrency: config.blendConcurrency },
  );
  worker.on('error', (err) => log.warn('blend worker error', { error: errorMessage(err) }));
  await worker.waitUntilReady().catch(() => undefined);
  log.info('blend worker started', { model: info.source, concurrency: config.blendConcurrency });
  return {
    worker,
    thread,
    info,
    async close() {
      await withTimeout(worker.close(), 10_000, 'closing the blend worker').catch(() => worker.close(true));
      if (ownThread) await thread.terminate();
      await closeRedis(connection);
    },
  };
}
