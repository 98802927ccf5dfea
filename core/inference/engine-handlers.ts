/**
 * The inference thread's handlers (see core/runtime/inference-thread.ts): the model, the engine and the
 * tiered chunk-cache loader live on the thread, so neither inference nor KV decoding ever blocks the
 * process's main thread (HTTP, BullMQ lock renewal). Also usable in-process (tests call createHandlers).
 */
import type { MessagePort } from 'node:worker_threads';
import { tokenIdsOnly, type ChunkKvSource } from '../blend/index.js';
import type { KvDtype, ModelSourceSettings, S3Settings } from '../config/index.js';
import { InvalidArgumentError, KvMismatchError, errorMessage } from '../errors.js';
import { Engine, type ExecutionProvider } from '../model/engine.js';
import { loadModel } from '../model/load.js';
import { emptyCacheStats, type CacheStats } from '../cache/types.js';
import type { BlendJobData, BlendJobResult, BlendProgress } from '../queue/contracts.js';
import { openObjectStore } from '../storage/index.js';
import { DiskTier } from '../cache/disk-tier.js';
import type { ObjectStore } from '../storage/types.js';
import type { Tokenizer } from '../model/types.js';
import { TieredChunkLoader, type LoadedChunk } from '../cache/tiered-loader.js';
import { createLogger, type LogLevel, type Logger } from '../ops/log.js';
import { answerText, blendAndDecode, checkContextFits, computeChunkObject, promptIds } from './pipeline.js';

export interface EngineThreadInit {
  model: string;
  modelSource: ModelSourceSettings;
  executionProvider: ExecutionProvider;
  /** onnxruntime intra-op threads (0: onnxruntime decides). */
  threads: number;
  kvStoreUrl: string;
  s3: S3Settings;
  /** Disk cache directory; null disables the tier. */
  diskCacheDir: string | null;
  /** Bound of the disk tier in bytes (0 disables it). */
  diskCacheBytes: number;
  lruBytes: number;
  kvDtype: KvDtype;
  logLevel: LogLevel;
}

export interface EngineInfo {
  fingerprint: string;
  source: string;
  numLayers: number;
  kvHeads: number;
  headDim: number;
  maxPositions: number;
}

/** What the thread returns for a blend job; the worker adds queueMs and workerMs. */
export type BlendThreadResult = Omit<BlendJobResult, 'timings'> & {
  timings: Omit<BlendJobResult['timings'], 'queueMs' | 'workerMs'>;
};

/** What the handlers hold for the thread's life. */
interface EngineContext {
  init: EngineThreadInit;
  engine: Engine;
  store: ObjectStore;
  disk: DiskTier | null;
  loader: TieredChunkLoader;
  log: Logger;
}

async function openEngine(init: EngineThreadInit): Promise<EngineContext> {
  const log = createLogger(init.logLevel, 'engine');
  const model = await loadModel(init.model, init.modelSource);
  const engine = await Engine.create(model, {
    executionProvider: init.executionProvider,
    threads: init.threads,
  });
  const cfg = model.config;
  const store = openObjectStore(init.kvStoreUrl, { s3: init.s3 });
  const disk =
    init.diskCacheDir && init.diskCacheBytes > 0
      ? new DiskTier(init.diskCacheDir, init.diskCacheBytes, log)
      : null;
  const loader = new TieredChunkLoader({
    store,
    disk,
    lruBytes: init.lruBytes,
    fingerprint: model.fingerprint,
    numLayers: cfg.numLayers,
    kvHeads: cfg.numKvHeads,
    headDim: cfg.headDim,
    compute: (ids) => computeChunkObject(engine, ids, init.kvDtype),
    log,
  });
  return { init, engine, store, disk, loader, log };
}

export async function createHandlers(init: EngineThreadInit) {
  const ctx = await openEngine(init);
  const { engine, loader, store, disk } = ctx;
  const { model, config: cfg } = engine;
  return {
    async info(): Promise<EngineInfo> {
      return {
        fingerprint: model.fingerprint,
        source: model.source,
        numLayers: cfg.numLayers,
        kvHeads: cfg.numKvHeads,
        headDim: cfg.headDim,
        maxPositions: cfg.maxPositionEmbeddings,
      };
    },

    /** A chunk's encoded KV object (the precompute worker stores it). */
    async computeChunk(tokenIds: number[]): Promise<Buffer> {
      if (tokenIds.length === 0) throw new InvalidArgumentError('a chunk needs at least one token');
      return computeChunkObject(engine, tokenIds, init.kvDtype);
    },

    async blend(job: BlendJobData, port?: MessagePort): Promise<BlendThreadResult> {
      try {
        return await runBlend(ctx, job, port);
      } finally {
        port?.close();
      }
    },

    /** Bytes and entries in the LRU tier. */
    async lruStats(): Promise<{ bytes: number; entries: number }> {
      return { bytes: loader.lru.bytes, entries: loader.lru.size };
    },

    async clearLru(): Promise<void> {
      loader.lru.clear();
    },

    /** Drop chunks from the LRU and disk tiers (their documents were deleted); returns how many were held. */
    async evictChunks(keys: string[]): Promise<number> {
      await loader.flush(); // a disk write still in flight would bring a copy back
      let held = 0;
      for (const key of keys) {
        if (loader.lru.delete(key)) held++;
        if (disk && (await disk.head(loader.objectKey(key)))) held++;
        await disk?.delete(loader.objectKey(key));
      }
      return held;
    },

    /** Which of `keys` the LRU and the disk tier hold. */
    async cachedChunks(keys: string[]): Promise<{ lru: string[]; disk: string[] }> {
      const disk: string[] = [];
      for (const k of keys) if (ctx.disk && (await ctx.disk.head(loader.objectKey(k)))) disk.push(k);
      return { lru: keys.filter((k) => loader.lru.has(k)), disk };
    },

    /** Chunk keys of this model's objects in the disk tier. */
    async diskChunkKeys(): Promise<string[]> {
      if (!disk) return [];
      const keys: string[] = [];
      for await (const k of disk.list(`kv/${model.fingerprint.slice(0, 16)}/`)) {
        const m = /\/([0-9a-f]{64})\.kv$/.exec(k);
        if (m) keys.push(m[1]);
      }
      return keys;
    },

    /** Bytes and entries the disk tier holds. */
    async diskStats(): Promise<{ bytes: number; maxBytes: number }> {
      await disk?.settle();
      return { bytes: disk?.bytes ?? 0, maxBytes: disk?.maxBytes ?? 0 };
    },

    async close(): Promise<void> {
      await loader.flush();
      await disk?.close();
      await store.close();
      await engine.dispose();
    },
  };
}

/**
 * The chunk sources a mode reads: none for full (tokens only), the first chunk's cache for prefix (the
 * rest is prefilled), every chunk's for reuse and blend. `opened` are the ones read through the tiers.
 */
async function openSources(
  loader: TieredChunkLoader,
  job: BlendJobData,
  stats: CacheStats,
): Promise<{ sources: ChunkKvSource[]; opened: LoadedChunk[] }> {
  const tokensOnly = (chunks: BlendJobData['chunks']) => chunks.map((c) => tokenIdsOnly(c.tokenIds));
  if (job.mode === 'full') return { sources: tokensOnly(job.chunks), opened: [] };
  if (job.mode === 'prefix') {
    const opened = job.chunks.length
      ? [await loader.open(job.chunks[0].key, job.chunks[0].tokenIds, stats)]
      : [];
    return { sources: [...opened, ...tokensOnly(job.chunks.slice(1))], opened };
  }
  const opened = await Promise.all(job.chunks.map((c) => loader.open(c.key, c.tokenIds, stats)));
  return { sources: opened, opened };
}

/**
 * A token callback that posts the answer's new text to `port` as it grows. Text is decode(prompt +
 * generated) minus decode(prompt); a trailing partial UTF-8 character is held back, and text already sent
 * is never retracted.
 */
function textStreamer(tok: Tokenizer, prompt: readonly number[], port: MessagePort): (id: number) => void {
  const generated: number[] = [];
  const base = tok.decode([...prompt]).length;
  let sent = '';
  return (id) => {
    generated.push(id);
    const stable = tok
      .decode([...prompt, ...generated])
      .slice(base)
      .replace(/\uFFFD+$/, '');
    if (stable.length > sent.length && stable.startsWith(sent)) {
      const msg: BlendProgress = { delta: stable.slice(sent.length), tokens: generated.length };
      sent = stable;
      port.postMessage(msg);
    }
  };
}

async function runBlend(
  ctx: EngineContext,
  job: BlendJobData,
  port?: MessagePort,
): Promise<BlendThreadResult> {
  const { engine, loader, log } = ctx;
  const { model, config: cfg } = engine;
  if (job.fingerprint !== model.fingerprint) {
    throw new KvMismatchError(
      `the job was made for model ${job.fingerprint.slice(0, 12)}, this worker runs ${model.fingerprint.slice(0, 12)}`,
    );
  }
  const questionIds = model.tokenizer.encode(job.question);
  if (questionIds.length === 0) throw new InvalidArgumentError('question: has no tokens');
  const promptTokens = 1 + job.chunks.reduce((a, c) => a + c.tokenIds.length, 0) + questionIds.length;
  checkContextFits(promptTokens, job.maxTokens, cfg.maxPositionEmbeddings, {
    prompt: 'documents',
    maxTokens: 'maxTokens',
  });
  const stats = emptyCacheStats();
  const t0 = performance.now();
  const { sources, opened } = await openSources(loader, job, stats);
  const openMs = performance.now() - t0;
  const prompt = promptIds(cfg.bosTokenId, sources, questionIds);
  const { prefill, tokens, decodeMs } = await blendAndDecode(
    engine,
    sources,
    questionIds,
    { mode: job.mode, ratio: job.ratio },
    { maxTokens: job.maxTokens, temperature: job.temperature, seed: job.seed },
    port && textStreamer(model.tokenizer, prompt, port),
  );
  // Fill the LRU and disk tiers with whole objects (blend skips the layers below its check layer).
  await Promise.all(
    opened.map((c) =>
      c.complete().catch((err) =>
        log.warn('could not complete a chunk cache', {
          key: c.key,
          requestId: job.requestId,
          error: errorMessage(err),
        }),
      ),
    ),
  );
  return {
    answer: answerText(model.tokenizer, prompt, tokens),
    tokens,
    mode: job.mode,
    ttftMs: openMs + prefill.timings.ttftMs,
    promptTokens: prefill.promptTokens,
    contextTokens: prefill.contextTokens,
    recomputedTokens: prefill.recomputedTokens,
    ...(job.mode === 'blend' && { ratio: prefill.ratio }),
    timings: {
      loadMs: openMs + prefill.timings.loadWaitMs,
      computeMs: prefill.timings.computeMs + decodeMs,
    },
    cache: stats,
  };
}

export type EngineHandlers = Awaited<ReturnType<typeof createHandlers>>;
