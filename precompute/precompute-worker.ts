/**
 * The precompute worker: consumes `precompute` jobs (one per chunk, job id = chunk key) and stores each
 * chunk's KV cache. Idempotent: a valid object already in the store is not recomputed. The object appears
 * whole or not at all (ObjectStore.put is atomic). Inference runs on an InferenceThread, so this thread
 * stays free to renew BullMQ locks.
 *
 * Self-healing: a job whose chunk lock is held elsewhere goes back to the queue for a moment instead of
 * occupying a slot; failed attempts retry with backoff over minutes (precomputeBackoffMs), except that
 * jobs that failed on the store run again as soon as a probe write finds it answering
 * (store-recovery.ts); a worker that
 * dies frees its chunk locks within seconds (LOCK_TTL_MS) and its jobs within about JOB_LOCK_MS; and the
 * reconciler (core/documents/reconciler.ts) re-enqueues lost chunks and retries failed ones.
 */
import { DelayedError, Queue, UnrecoverableError, type Job, type Worker } from 'bullmq';
import { storedObjectSize } from '../core/cache/chunk-object.js';
import type { Config } from '../core/config/index.js';
import { DocumentService } from '../core/documents/documents.js';
import { Reconciler } from '../core/documents/reconciler.js';
import {
  KvFormatError,
  KvMismatchError,
  StorageError,
  UnavailableError,
  errorMessage,
} from '../core/errors.js';
import type { EngineInfo, EngineThreadInit } from '../core/inference/engine-handlers.js';
import { ChunkBatcher } from '../core/inference/chunk-batcher.js';
import { workerEngineThread, type EngineCaller } from '../core/inference/engine-thread.js';
import { chunkKey, chunkObjectKey, type KvDtype } from '../core/kv/format.js';
import { silentLogger, type Logger } from '../core/ops/log.js';
import { metrics } from '../core/ops/metrics.js';
import {
  PRECOMPUTE_QUEUE,
  encodeFailure,
  precomputeBackoffMs,
  type PrecomputeJobData,
  type PrecomputeJobResult,
} from '../core/queue/contracts.js';
import { checkDurabilityWhenReachable } from '../core/queue/durability.js';
import { closeRedis, closeWhileConnected, createRedis, dropQueues, keyPrefix } from '../core/queue/redis.js';
import { startQueueWorker } from '../core/queue/worker.js';
import { openObjectStore } from '../core/storage/index.js';
import type { ObjectStore } from '../core/storage/types.js';
import { StoreRecovery } from './store-recovery.js';

export interface PrecomputeWorkerOptions {
  config: Config;
  log?: Logger;
  /** Share an inference thread (e.g. a test's); by default the worker starts and owns one. */
  thread?: EngineCaller;
  threadInit?: Partial<EngineThreadInit>;
  /** How long a job waits for a chunk lock held elsewhere before it steps back into the queue (default 2 s). */
  lockWaitMs?: number;
  /** Period of the reconciler (default RECONCILE_INTERVAL_MS; 0 disables). */
  reconcileMs?: number;
  /** How often a store that failed an attempt is probed (default STORE_PROBE_MS). */
  storeProbeMs?: number;
}

export interface PrecomputeWorker {
  worker: Worker<PrecomputeJobData, PrecomputeJobResult>;
  info: EngineInfo;
  store: ObjectStore;
  reconciler: Reconciler;
  close(): Promise<void>;
}

/** What one precompute job needs around it. */
interface PrecomputeContext {
  thread: EngineCaller;
  /** A chunk's encoded object: through a batcher on a GPU engine, else one thread call per chunk. */
  compute: (tokenIds: number[]) => Promise<Uint8Array>;
  info: EngineInfo;
  /** The dtype computed caches are stored in; an existing object of a coarser one is rewritten. */
  kvDtype: KvDtype;
  store: ObjectStore;
  docs: DocumentService;
  log: Logger;
  lockWaitMs: number;
  recovery: StoreRecovery;
}

export async function startPrecomputeWorker(opts: PrecomputeWorkerOptions): Promise<PrecomputeWorker> {
  const { config } = opts;
  const log = opts.log ?? silentLogger;
  const { thread, ownThread } = await workerEngineThread(config, opts, log);
  const info = await thread.call('info', []);
  const store = openObjectStore(config.kvStoreUrl, { s3: config.s3 });
  const redis = createRedis(config, 'worker');
  try {
    await checkDurabilityWhenReachable(redis, config.redisRequireDurable, log);
  } catch (err) {
    await closeRedis(redis);
    if (ownThread) await thread.terminate();
    throw err;
  }
  const queue = new Queue(PRECOMPUTE_QUEUE, { connection: redis, prefix: keyPrefix(config.queuePrefix) });
  queue.on('error', () => undefined);
  const docs = new DocumentService(
    redis,
    store,
    queue,
    config.queuePrefix,
    log,
    config.precomputeAttempts,
    config.jobHistory,
  );
  // On a GPU engine, jobs running at the same time (up to PRECOMPUTE_CONCURRENCY) compute in one batch.
  const batcher = info.batchesChunks
    ? new ChunkBatcher((batch) => thread.call('computeChunks', [batch]), config.precomputeConcurrency)
    : null;
  const compute = (ids: number[]) => (batcher ? batcher.compute(ids) : thread.call('computeChunk', [ids]));
  const lockWaitMs = opts.lockWaitMs ?? 2_000;
  const reconciler = new Reconciler(docs, { log });
  const retryFailed = () => reconciler.retryFailedNow();
  const recovery = new StoreRecovery(store, queue, log, retryFailed, opts.storeProbeMs);
  const ctx: PrecomputeContext = {
    thread,
    compute,
    info,
    kvDtype: config.kvDtype,
    store,
    docs,
    log,
    lockWaitMs,
    recovery,
  };
  const queueWorker = await startQueueWorker<PrecomputeJobData, PrecomputeJobResult>({
    queue: PRECOMPUTE_QUEUE,
    connection: createRedis(config, 'worker'),
    prefix: config.queuePrefix,
    concurrency: config.precomputeConcurrency,
    lockMs: config.jobLockMs,
    backoffMs: precomputeBackoffMs,
    log,
    process: (job, jobLog, token) => precomputeJob({ ...ctx, log: jobLog }, job, token),
    onFinalFailure: (job, failure) => docs.lifecycle.markFailed(job.data.key, failure),
  });
  reconciler.start(opts.reconcileMs ?? config.reconcileIntervalMs);
  log.info('precompute worker started', { model: info.source, concurrency: config.precomputeConcurrency });
  return {
    worker: queueWorker.worker,
    info,
    store,
    reconciler,
    async close() {
      await reconciler.stop();
      await queueWorker.close();
      await recovery.close();
      if (ownThread) await thread.terminate();
      if (!(await closeWhileConnected(() => queue.close(), redis, 2_000))) dropQueues([queue]);
      await closeRedis(redis);
      await store.close();
    },
  };
}

/** Refuse a job whose data does not match its key, that cannot fit the model, or is for another model. */
function checkJob(data: PrecomputeJobData, info: EngineInfo): void {
  if (
    !Array.isArray(data.tokenIds) ||
    data.tokenIds.length === 0 ||
    chunkKey(data.fingerprint, data.tokenIds, data.salt ?? '') !== data.key
  ) {
    throw new UnrecoverableError(encodeFailure('INVALID_ARGUMENT', 'job data does not match its chunk key'));
  }
  if (data.tokenIds.length + 1 > info.maxPositions) {
    throw new UnrecoverableError(
      encodeFailure(
        'PAYLOAD_TOO_LARGE',
        `chunk of ${data.tokenIds.length} tokens does not fit the model's context of ${info.maxPositions}`,
      ),
    );
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

/** How long a job whose chunk is locked elsewhere waits in the queue before it tries again. */
const LOCKED_RETRY_MS = 1_000;

/**
 * Store one chunk's cache under its lock, unless nobody wants it or a valid object is already there. A
 * chunk locked elsewhere (a garbage collection, or a job of an older generation) sends the job back to
 * the queue for a moment, so it never holds a worker slot while waiting.
 */
async function precomputeJob(
  ctx: PrecomputeContext,
  job: Job<PrecomputeJobData, PrecomputeJobResult>,
  token: string | undefined,
): Promise<PrecomputeJobResult> {
  checkJob(job.data, ctx.info);
  const r = await ctx.docs.lifecycle.withLock(job.data.key, ctx.lockWaitMs, () => precomputeLocked(ctx, job));
  if (r) return r.value;
  await job.moveToDelayed(Date.now() + LOCKED_RETRY_MS, token);
  throw new DelayedError();
}

async function precomputeLocked(
  ctx: PrecomputeContext,
  job: Job<PrecomputeJobData, PrecomputeJobResult>,
): Promise<PrecomputeJobResult> {
  const { data } = job;
  const { docs, store } = ctx;
  const m = metrics();
  if (!(await docs.lifecycle.beginPrecompute(data.key))) {
    m.precomputed.inc({ result: 'skipped' });
    return { key: data.key, computed: false, bytes: 0, written: 0, skipped: 'unreferenced' as const };
  }
  const objKey = chunkObjectKey(data.fingerprint, data.key);
  const existing = await onStore(ctx, job, () => validExistingObject(ctx, objKey, data));
  if (existing !== null) {
    await docs.lifecycle.markReady(data.key, data.fingerprint, { bytes: existing, written: 0 });
    await job.updateProgress(100);
    m.precomputed.inc({ result: 'existing' });
    return { key: data.key, computed: false, bytes: existing, written: 0 };
  }
  await job.updateProgress(10);
  const u8 = await ctx.compute(data.tokenIds);
  const buf = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
  await job.updateProgress(70);
  await onStore(ctx, job, () => store.put(objKey, buf));
  await docs.lifecycle.markReady(data.key, data.fingerprint, { bytes: buf.length, written: buf.length });
  await job.updateProgress(100);
  m.precomputed.inc({ result: 'computed' });
  m.bytesWritten.inc(buf.length);
  return { key: data.key, computed: true, bytes: buf.length, written: buf.length };
}

/**
 * A store operation of `job`: failing on the store (unavailable, or refusing the operation, as a read-only
 * bucket does), it notes the job for the store's recovery.
 */
async function onStore<T>(ctx: PrecomputeContext, job: Job, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    const onTheStore = err instanceof UnavailableError || err instanceof StorageError;
    if (onTheStore && job.id !== undefined) ctx.recovery.storeFailed(job.id);
    throw err;
  }
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
      kvDtype: ctx.kvDtype,
    });
  } catch (err) {
    if (!(err instanceof KvFormatError || err instanceof KvMismatchError)) throw err;
    ctx.log.warn('stored chunk cache is invalid: recomputing', { key: data.key, error: errorMessage(err) });
    return null;
  }
}
