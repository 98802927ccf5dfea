/**
 * The precompute worker: consumes `precompute` jobs (one per chunk, job id = chunk key) and stores each
 * chunk's KV cache. Idempotent: a valid object already in the store is not recomputed. The object appears
 * whole or not at all (ObjectStore.put is atomic). Inference runs on an InferenceThread, so this thread
 * stays free to renew BullMQ locks.
 */
import { UnrecoverableError, type Job, type Worker } from 'bullmq';
import { storedObjectSize } from '../core/cache/chunk-object.js';
import type { Config } from '../core/config/index.js';
import { DocumentService } from '../core/documents/documents.js';
import { KvFormatError, KvMismatchError, errorMessage } from '../core/errors.js';
import type { EngineInfo, EngineThreadInit } from '../core/inference/engine-handlers.js';
import { ChunkBatcher } from '../core/inference/chunk-batcher.js';
import { workerEngineThread, type EngineCaller } from '../core/inference/engine-thread.js';
import { chunkKey, chunkObjectKey } from '../core/kv/format.js';
import { silentLogger, type Logger } from '../core/ops/log.js';
import { metrics } from '../core/ops/metrics.js';
import {
  PRECOMPUTE_QUEUE,
  encodeFailure,
  type PrecomputeJobData,
  type PrecomputeJobResult,
} from '../core/queue/contracts.js';
import { closeRedis, createRedis } from '../core/queue/redis.js';
import { startQueueWorker } from '../core/queue/worker.js';
import { openObjectStore } from '../core/storage/index.js';
import type { ObjectStore } from '../core/storage/types.js';

export interface PrecomputeWorkerOptions {
  config: Config;
  log?: Logger;
  /** Share an inference thread (e.g. a test's); by default the worker starts and owns one. */
  thread?: EngineCaller;
  threadInit?: Partial<EngineThreadInit>;
  /** How long a job waits for a chunk lock held by a garbage collection (default 60 s). */
  lockWaitMs?: number;
  /** Period of the sweep that retries deferred chunk deletions (default 60 s; 0 disables). */
  sweepMs?: number;
}

export interface PrecomputeWorker {
  worker: Worker<PrecomputeJobData, PrecomputeJobResult>;
  info: EngineInfo;
  store: ObjectStore;
  close(): Promise<void>;
}

/** What one precompute job needs around it. */
interface PrecomputeContext {
  thread: EngineCaller;
  /** A chunk's encoded object: through a batcher on a GPU engine, else one thread call per chunk. */
  compute: (tokenIds: number[]) => Promise<Uint8Array>;
  info: EngineInfo;
  store: ObjectStore;
  docs: DocumentService;
  log: Logger;
  lockWaitMs: number;
}

export async function startPrecomputeWorker(opts: PrecomputeWorkerOptions): Promise<PrecomputeWorker> {
  const { config } = opts;
  const log = opts.log ?? silentLogger;
  const { thread, ownThread } = await workerEngineThread(config, opts, log);
  const info = await thread.call('info', []);
  const store = openObjectStore(config.kvStoreUrl, { s3: config.s3 });
  const redis = createRedis(config.redisUrl, 'worker');
  const docs = new DocumentService(redis, store, null, config.queuePrefix, log);
  // On a GPU engine, jobs running at the same time (up to PRECOMPUTE_CONCURRENCY) compute in one batch.
  const batcher = info.batchesChunks
    ? new ChunkBatcher((batch) => thread.call('computeChunks', [batch]), config.precomputeConcurrency)
    : null;
  const compute = (ids: number[]) => (batcher ? batcher.compute(ids) : thread.call('computeChunk', [ids]));
  const ctx: PrecomputeContext = {
    thread,
    compute,
    info,
    store,
    docs,
    log,
    lockWaitMs: opts.lockWaitMs ?? 60_000,
  };
  const queueWorker = await startQueueWorker<PrecomputeJobData, PrecomputeJobResult>({
    queue: PRECOMPUTE_QUEUE,
    connection: createRedis(config.redisUrl, 'worker'),
    prefix: config.queuePrefix,
    concurrency: config.precomputeConcurrency,
    log,
    process: (job, jobLog) => precomputeJob({ ...ctx, log: jobLog }, job),
    onFinalFailure: (job, failure) => docs.markFailed(job.data.key, failure),
  });
  const sweep = startSweep(docs, opts.sweepMs ?? 60_000);
  log.info('precompute worker started', { model: info.source, concurrency: config.precomputeConcurrency });
  return {
    worker: queueWorker.worker,
    info,
    store,
    async close() {
      if (sweep) clearInterval(sweep);
      await queueWorker.close();
      if (ownThread) await thread.terminate();
      await closeRedis(redis);
      await store.close();
    },
  };
}

/** Retry deferred chunk deletions every `ms` (0: never). */
function startSweep(docs: DocumentService, ms: number): NodeJS.Timeout | null {
  if (ms <= 0) return null;
  const timer = setInterval(() => {
    docs.sweep().catch(() => undefined);
  }, ms);
  timer.unref();
  return timer;
}

/** Refuse a job whose data does not match its key, or that is for another model. */
function checkJob(data: PrecomputeJobData, info: EngineInfo): void {
  if (
    !Array.isArray(data.tokenIds) ||
    data.tokenIds.length === 0 ||
    chunkKey(data.fingerprint, data.tokenIds) !== data.key
  ) {
    throw new UnrecoverableError(encodeFailure('INVALID_ARGUMENT', 'job data does not match its chunk key'));
  }
  if (data.fingerprint !== info.fingerprint) {
    throw new UnrecoverableError(
      encodeFailure(
        'KV_MISMATCH',
        `chunk is for model ${data.fingerprint.slice(0, 12)}, this worker runs ${info.fingerprint.slice(0, 12)}`,
      ),
    );
  }
}

/** Store one chunk's cache under its lock, unless nobody wants it or a valid object is already there. */
async function precomputeJob(
  ctx: PrecomputeContext,
  job: Job<PrecomputeJobData, PrecomputeJobResult>,
): Promise<PrecomputeJobResult> {
  const { data } = job;
  const { docs, store } = ctx;
  const m = metrics();
  checkJob(data, ctx.info);
  return docs.withChunkLock(data.key, ctx.lockWaitMs, async () => {
    if (!(await docs.isReferenced(data.key))) {
      m.precomputed.inc({ result: 'skipped' });
      return { key: data.key, computed: false, bytes: 0, written: 0, skipped: 'unreferenced' as const };
    }
    const objKey = chunkObjectKey(data.fingerprint, data.key);
    const existing = await validExistingObject(ctx, objKey, data);
    if (existing !== null) {
      await docs.markReady(data.key, data.fingerprint, { bytes: existing, written: 0 });
      await job.updateProgress(100);
      m.precomputed.inc({ result: 'existing' });
      return { key: data.key, computed: false, bytes: existing, written: 0 };
    }
    await job.updateProgress(10);
    const u8 = await ctx.compute(data.tokenIds);
    const buf = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
    await job.updateProgress(70);
    await store.put(objKey, buf);
    await docs.markReady(data.key, data.fingerprint, {
      bytes: buf.length,
      written: buf.length,
      tokens: data.tokenIds.length,
    });
    await job.updateProgress(100);
    m.precomputed.inc({ result: 'computed' });
    m.bytesWritten.inc(buf.length);
    return { key: data.key, computed: true, bytes: buf.length, written: buf.length };
  });
}

/** Size of a valid stored object, or null when it is missing or bad (which the caller then rewrites). */
async function validExistingObject(
  ctx: PrecomputeContext,
  objKey: string,
  data: PrecomputeJobData,
): Promise<number | null> {
  const { info } = ctx;
  try {
    return await storedObjectSize(ctx.store, objKey, {
      fingerprint: data.fingerprint,
      tokenIds: data.tokenIds,
      numLayers: info.numLayers,
      kvHeads: info.kvHeads,
      headDim: info.headDim,
    });
  } catch (err) {
    if (!(err instanceof KvFormatError || err instanceof KvMismatchError)) throw err;
    ctx.log.warn('stored chunk cache is invalid: recomputing', { key: data.key, error: errorMessage(err) });
    return null;
  }
}
