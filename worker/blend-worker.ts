/**
 * The blend worker: consumes `blend` jobs (one per query). Cache loading (LRU → disk → store, layer by
 * layer), the CacheBlend prefill and decoding all run on the inference thread; this thread only moves the
 * job, relays streamed text as job progress, and records metrics.
 */
import { MessageChannel } from 'node:worker_threads';
import { type Job, type Worker } from 'bullmq';
import type { Config } from '../core/config/index.js';
import type { EngineInfo, EngineThreadInit } from '../core/inference/engine-handlers.js';
import { workerEngineThread, type EngineCaller } from '../core/inference/engine-thread.js';
import { CancelledError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/ops/log.js';
import { observeBlend } from '../core/ops/metrics.js';
import {
  BLEND_QUEUE,
  type BlendJobData,
  type BlendJobResult,
  type BlendProgress,
} from '../core/queue/contracts.js';
import { closeRedis, createRedis } from '../core/queue/redis.js';
import { startQueueWorker } from '../core/queue/worker.js';
import { followCancellations, type CancellationFollower } from './cancellation.js';
import { followEvictions, type EvictionFollower } from './eviction.js';

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
  evictions: EvictionFollower;
  close(): Promise<void>;
}

export async function startBlendWorker(opts: BlendWorkerOptions): Promise<BlendWorker> {
  const { config } = opts;
  const log = opts.log ?? silentLogger;
  const { thread, ownThread } = await workerEngineThread(config, opts, log);
  const info = await thread.call('info', []);
  const redis = createRedis(config, 'worker');
  let cancels: CancellationFollower | null = null;
  const queueWorker = await startQueueWorker<BlendJobData, BlendJobResult>({
    queue: BLEND_QUEUE,
    connection: createRedis(config, 'worker'),
    prefix: config.queuePrefix,
    concurrency: config.blendConcurrency,
    lockMs: config.jobLockMs,
    log,
    process: (job, _log, _token, signal) => runBlendJob(thread, job, signal, cancels),
  });
  cancels = await followCancellations({
    settings: config,
    queuePrefix: config.queuePrefix,
    redis,
    worker: queueWorker.worker,
    log,
  });
  const evictions = await followEvictions({
    settings: config,
    queuePrefix: config.queuePrefix,
    redis,
    thread,
    log,
  });
  log.info('blend worker started', { model: info.source, concurrency: config.blendConcurrency });
  return {
    worker: queueWorker.worker,
    thread,
    info,
    evictions,
    async close() {
      await queueWorker.close();
      await cancels?.close();
      await evictions.close();
      await closeRedis(redis);
      if (ownThread) await thread.terminate();
    },
  };
}

/**
 * Run one query on the inference thread, streaming its text as job progress when asked to. A job the API
 * cancelled is dropped before it starts; one cancelled while it runs (`signal`) is stopped by the thread at
 * its next step, through a flag in shared memory.
 */
async function runBlendJob(
  thread: EngineCaller,
  job: Job<BlendJobData, BlendJobResult>,
  signal: AbortSignal | undefined,
  cancels: CancellationFollower | null,
): Promise<BlendJobResult> {
  const started = Date.now();
  const queueMs = Math.max(0, (job.processedOn ?? started) - job.timestamp);
  if (job.id && (await cancels?.isCancelled(job.id))) {
    throw new CancelledError('the client went away before the query started');
  }
  const cancel = new Int32Array(new SharedArrayBuffer(4));
  const onAbort = () => Atomics.store(cancel, 0, 1);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  const relay = job.data.stream ? new ProgressRelay(job) : null;
  try {
    const r = await thread.call(
      'blend',
      [job.data, relay?.threadPort, cancel],
      relay ? [relay.threadPort] : [],
    );
    await relay?.drain();
    const result: BlendJobResult = {
      ...r,
      timings: { ...r.timings, queueMs, workerMs: Date.now() - started },
    };
    observeBlend(result);
    return result;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    relay?.close();
  }
}

/**
 * Carries streamed text from the inference thread (a MessagePort) to the job's progress, coalescing deltas
 * into as few progress updates as Redis keeps up with, in order.
 */
class ProgressRelay {
  private readonly channel = new MessageChannel();
  private pending: BlendProgress | null = null;
  private flushing: Promise<void> = Promise.resolve();
  private inFlight = false;

  constructor(private readonly job: Job<BlendJobData, BlendJobResult>) {
    this.channel.port1.on('message', (p: BlendProgress) => {
      this.pending = this.pending ? { delta: this.pending.delta + p.delta, tokens: p.tokens } : p;
      if (!this.inFlight) this.flushing = this.flush();
    });
  }

  /** The end handed to the inference thread. */
  get threadPort() {
    return this.channel.port2;
  }

  private async flush(): Promise<void> {
    this.inFlight = true;
    while (this.pending) {
      const p: BlendProgress = this.pending;
      this.pending = null;
      await this.job.updateProgress(p as unknown as object).catch(() => undefined);
    }
    this.inFlight = false;
  }

  /** Wait until every message the thread sent is in the job's progress. */
  async drain(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve)); // let the last port messages arrive
    await this.flushing;
    if (this.pending) await this.flush();
  }

  close(): void {
    this.channel.port1.close();
  }
}
