/**
 * The precompute worker: consumes `precompute` jobs (one per chunk, job id = chunk key) and stores each
 * chunk's KV cache. Idempotent: a valid object already in the store is not recomputed. The object appears
 * whole or not at all (ObjectStore.put is atomic). Inference runs on an InferenceThread, so this thread
 * stays free to renew BullMQ locks.
 */
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../core/config/index.js';
import { CacheBlendError, errorMessage } from '../core/errors.js';
import {
  checkKvHeader,
  chunkKey,
  chunkObjectKey,
  decodeKvHeader,
  headerBytesFor,
  totalBytes,
} from '../core/kv/format.js';
import {
  PRECOMPUTE_QUEUE,
  encodeFailure,
  type PrecomputeJobData,
  type PrecomputeJobResult,
} from '../core/queue/contracts.js';
import { closeRedis, createRedis } from '../core/queue/redis.js';
import { withTimeout } from '../core/util/timeout.js';
import { DocumentService } from '../core/documents/documents.js';
import type { EngineInfo, EngineThreadInit } from '../core/inference/engine-handlers.js';
import { workerEngineThread, type EngineCaller } from '../core/inference/engine-thread.js';
import { silentLogger, type Logger } from '../core/ops/log.js';
import { metrics } from '../core/ops/metrics.js';
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

/** Size of a valid stored object, or null when it is missing or bad (which the caller then rewrites). */
async function existingObject(
  store: ObjectStore,
  objKey: string,
  data: PrecomputeJobData,
  info: EngineInfo,
  log: Logger,
): Promise<number | null> {
  const head = await store.head(objKey);
  if (!head) return null;
  try {
    const probe = await store.getRange(objKey, 0, headerBytesFor(data.tokenIds.length, info.numLayers));
    if (!probe) return null;
    const header = decodeKvHeader(probe);
    checkKvHeader(header, {
      fingerprint: data.fingerprint,
      tokenIds: data.tokenIds,
      numLayers: info.numLayers,
      kvHeads: info.kvHeads,
      headDim: info.headDim,
    });
    if (head.size !== totalBytes(header)) {
      throw new CacheBlendError(
        'KV_FORMAT',
        `object is ${head.size} bytes, header says ${totalBytes(header)}`,
      );
    }
    return head.size;
  } catch (err) {
    if (!(err instanceof CacheBlendError) || err.code === 'UNAVAILABLE' || err.code === 'STORAGE') throw err;
    log.warn('stored chunk cache is invalid: recomputing', { key: data.key, error: errorMessage(err) });
    return null;
  }
}

export async function startPrecomputeWorker(opts: PrecomputeWorkerOptions): Promise<PrecomputeWorker> {
  const { config } = opts;
  const log = opts.log ?? silentLogger;
  const { thread, ownThread } = await workerEngineThread(config, opts, log);
  const info = await thread.call('info', []);
  const store = openObjectStore(config.kvStoreUrl, { s3: config.s3 });
  const redis: Redis = createRedis(config.redisUrl, 'worker');
  const docs = new DocumentService(redis, store, null, config.queuePrefix, log);
  const bullConnection = createRedis(config.redisUrl, 'worker');
  const m = metrics();

  const process = async (job: Job<PrecomputeJobData, PrecomputeJobResult>): Promise<PrecomputeJobResult> => {
    const data = job.data;
    if (
      !Array.isArray(data.tokenIds) ||
      data.tokenIds.length === 0 ||
      chunkKey(data.fingerprint, data.tokenIds) !== data.key
    ) {
      throw new UnrecoverableError(
        encodeFailure('INVALID_ARGUMENT', 'job data does not match its chunk key'),
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
    return docs.withChunkLock(data.key, opts.lockWaitMs ?? 60_000, async () => {
      if (!(await docs.isReferenced(data.key))) {
        m.precomputed.inc({ result: 'skipped' });
        return { key: data.key, computed: false, bytes: 0, written: 0, skipped: 'unreferenced' as const };
      }
      const objKey = chunkObjectKey(data.fingerprint, data.key);
      const existing = await existingObject(store, objKey, data, info, log);
      if (existing !== null) {
        await docs.markReady(data.key, data.fingerprint, { bytes: existing, written: 0 });
        await job.updateProgress(100);
        m.precomputed.inc({ result: 'existing' });
        return { key: data.key, computed: false, bytes: existing, written: 0 };
      }
      await job.updateProgress(10);
      const u8 = await thread.call('computeChunk', [data.tokenIds]);
      const buf = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
      await job.updateProgress(70);
      await store.put(objKey, buf);
      await docs.markReady(data.key, data.fingerprint, { bytes: buf.length, written: buf.length });
      await job.updateProgress(100);
      m.precomputed.inc({ result: 'computed' });
      m.bytesWritten.inc(buf.length);
      return { key: data.key, computed: true, bytes: buf.length, written: buf.length };
    });
  };

  const worker = new Worker<PrecomputeJobData, PrecomputeJobResult>(
    PRECOMPUTE_QUEUE,
    async (job) => {
      const t0 = performance.now();
      m.jobQueueWait.observe({ queue: PRECOMPUTE_QUEUE }, Math.max(0, Date.now() - job.timestamp) / 1000);
      try {
        const result = await process(job);
        m.jobDuration.observe(
          { queue: PRECOMPUTE_QUEUE, outcome: 'completed' },
          (performance.now() - t0) / 1000,
        );
        return result;
      } catch (err) {
        m.jobDuration.observe(
          { queue: PRECOMPUTE_QUEUE, outcome: 'failed' },
          (performance.now() - t0) / 1000,
        );
        const final = err instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
        const message =
          err instanceof CacheBlendError ? encodeFailure(err.code, err.message) : errorMessage(err);
        log.warn('precompute job failed', {
          key: job.data.key,
          attempt: job.attemptsMade + 1,
          final,
          error: message,
        });
        if (final) await docs.markFailed(job.data.key, message).catch(() => undefined);
        if (err instanceof UnrecoverableError) throw err;
        throw new Error(message);
      }
    },
    { connection: bullConnection, prefix: config.queuePrefix, concurrency: config.precomputeConcurrency },
  );
  worker.on('error', (err) => log.warn('precompute worker error', { error: errorMessage(err) }));

  const sweepMs = opts.sweepMs ?? 60_000;
  const sweep =
    sweepMs > 0
      ? setInterval(() => {
          docs.sweep().catch(() => undefined);
        }, sweepMs)
      : null;
  sweep?.unref();

  await worker.waitUntilReady().catch(() => undefined);
  log.info('precompute worker started', { model: info.source, concurrency: config.precomputeConcurrency });
  return {
    worker,
    info,
    store,
    async close() {
      if (sweep) clearInterval(sweep);
      await withTimeout(worker.close(), 10_000, 'closing the precompute worker').catch(() =>
        worker.close(true),
      );
      if (ownThread) await thread.terminate();
      await closeRedis(redis);
      await closeRedis(bullConnection);
      await store.close();
    },
  };
}
