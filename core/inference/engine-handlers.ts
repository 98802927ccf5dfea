/**
 * The inference thread's handlers (see core/runtime/inference-thread.ts): the model, the engine and the
 * tiered chunk-cache loader live on the thread, so neither inference nor KV decoding ever blocks the
 * process's main thread (HTTP, BullMQ lock renewal). Also usable in-process (tests call createHandlers).
 */
import type { MessagePort } from 'node:worker_threads';
import { DEFAULT_RATIO, tokenIdsOnly, type BlendOptions } from '../blend/index.js';
import { CancelledError, InvalidArgumentError, KvMismatchError, errorMessage } from '../errors.js';
import { emptyCacheStats, type CacheStats } from '../cache/types.js';
import {
  openEngine,
  type BlendThreadResult,
  type EngineContext,
  type EngineInfo,
  type EngineThreadInit,
} from './engine-context.js';
import type {
  AutoRatio,
  BlendChunkRef,
  BlendJobData,
  BlendProgress,
  PromptSegment,
} from '../queue/contracts.js';
import { chunkKey } from '../kv/format.js';
import { frameIds, type FrameIds } from '../model/template.js';
import { explainContext } from './explain.js';
import type { Tokenizer } from '../model/types.js';
import { TieredChunkLoader, type LoadedChunk } from '../cache/tiered-loader.js';
import { describeCalibration, readCalibration } from '../eval/calibrate.js';
import {
  blendAndDecode,
  checkContextFits,
  computeChunkObject,
  computeChunkObjects,
  logprobTexts,
  promptLength,
  type BlendAnswer,
  type PromptParts,
} from './pipeline.js';

export type { BlendThreadResult, EngineInfo, EngineThreadInit } from './engine-context.js';

export async function createHandlers(init: EngineThreadInit) {
  const ctx = await openEngine(init);
  const { engine, loader, store, disk } = ctx;
  const { model, config: cfg } = engine;
  const gate = await openGate(ctx);
  return {
    async info(): Promise<EngineInfo> {
      return {
        fingerprint: engine.kvFingerprint,
        source: model.source,
        numLayers: cfg.numLayers,
        kvHeads: cfg.numKvHeads,
        headDim: cfg.headDim,
        maxPositions: cfg.maxPositionEmbeddings,
        batchesChunks: engine.device !== null,
      };
    },

    /** A chunk's encoded KV object (the precompute worker stores it). */
    async computeChunk(tokenIds: number[]): Promise<Buffer> {
      if (tokenIds.length === 0) throw new InvalidArgumentError('a chunk needs at least one token');
      return computeChunkObject(engine, tokenIds, init.kvDtype);
    },

    /** Several chunks' encoded objects, computed in one batch where the engine can (the GPU's). */
    async computeChunks(tokenIds: number[][]): Promise<Buffer[]> {
      if (tokenIds.some((t) => t.length === 0)) {
        throw new InvalidArgumentError('a chunk needs at least one token');
      }
      return computeChunkObjects(engine, tokenIds, init.kvDtype);
    },

    /** `cancel[0]` set to 1 (by the worker's main thread) stops the job at its next step. */
    async blend(job: BlendJobData, port?: MessagePort, cancel?: Int32Array): Promise<BlendThreadResult> {
      try {
        if (job.mode === 'blend' && gate.servesFull) {
          return { ...(await runBlend(ctx, { ...job, mode: 'full' }, port, cancel)), gatedToFull: true };
        }
        return await runBlend(ctx, job, port, cancel);
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
      for await (const k of disk.list(`kv/${engine.kvFingerprint.slice(0, 16)}/`)) {
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

    /** Resolves once the disk and store writes of earlier queries have finished. */
    async flush(): Promise<void> {
      await loader.flush();
    },

    async close(): Promise<void> {
      await loader.flush();
      await ctx.gate?.close();
      await disk?.close();
      await store.close();
      await engine.dispose();
    },
  };
}

/**
 * The model's calibration (cacheblend calibrate), read once at start and logged: a flagged model is
 * served in full mode when CALIBRATION_GATE is `full`. An unreadable store only loses the report.
 */
async function openGate(ctx: EngineContext): Promise<{ servesFull: boolean }> {
  const { engine, store, log, init } = ctx;
  const calibration = await readCalibration(store, engine.kvFingerprint).catch((err: unknown) => {
    log.warn('could not read the calibration', { error: errorMessage(err) });
    return null;
  });
  const servesFull = calibration?.flagged === true && init.calibrationGate === 'full';
  const fields = { model: engine.model.source, servesFull };
  if (calibration?.flagged) log.warn(`calibration: ${describeCalibration(calibration)}`, fields);
  else log.info(`calibration: ${describeCalibration(calibration)}`, fields);
  return { servesFull };
}

/**
 * The caches a mode reads: none for full (tokens only); for prefix the template prefix's, or without one
 * the first chunk's (the rest is prefilled); the prefix's and every chunk's for reuse and blend. `opened`
 * are the ones read through the tiers.
 */
async function openSources(
  loader: TieredChunkLoader,
  mode: BlendJobData['mode'],
  prefixRef: BlendChunkRef | null,
  refs: BlendChunkRef[],
  stats: CacheStats,
): Promise<{ parts: Omit<PromptParts, 'suffixIds'>; opened: LoadedChunk[] }> {
  const open = (r: BlendChunkRef) => loader.open(r.key, r.tokenIds, stats);
  const tokensOnly = (r: BlendChunkRef) => tokenIdsOnly(r.tokenIds);
  if (mode === 'full') {
    return {
      parts: { prefix: prefixRef && tokensOnly(prefixRef), chunks: refs.map(tokensOnly) },
      opened: [],
    };
  }
  if (mode === 'prefix') {
    if (prefixRef) {
      const prefix = await open(prefixRef);
      return { parts: { prefix, chunks: refs.map(tokensOnly) }, opened: [prefix] };
    }
    const first = refs.length ? [await open(refs[0])] : [];
    return { parts: { prefix: null, chunks: [...first, ...refs.slice(1).map(tokensOnly)] }, opened: first };
  }
  const [prefix, ...chunks] = await Promise.all([prefixRef && open(prefixRef), ...refs.map(open)]);
  const all = chunks as LoadedChunk[];
  return { parts: { prefix, chunks: all }, opened: prefix ? [prefix, ...all] : all };
}

/**
 * A text callback that posts the answer's new text to `port` as it grows (see AnswerText.streamable: a
 * partial UTF-8 character or a possible stop sequence is held back); text already sent is never retracted.
 */
function textStreamer(port: MessagePort): (text: string) => void {
  let sent = '';
  let tokens = 0;
  return (stable) => {
    tokens++;
    if (stable.length > sent.length && stable.startsWith(sent)) {
      const msg: BlendProgress = { delta: stable.slice(sent.length), tokens };
      sent = stable;
      port.postMessage(msg);
    }
  };
}

/** The per-token text callback, checking for cancellation first (decoding stops at the next token). */
function withCancellation(
  stopIfCancelled: () => void,
  onText: ((text: string) => void) | undefined,
): (text: string) => void {
  return (text) => {
    stopIfCancelled();
    onText?.(text);
  };
}

/** Raw chunk texts as chunk references: tokenized here, keyed like any stored chunk (with the tenant's salt). */
function rawChunkRefs(tok: Tokenizer, fingerprint: string, texts: string[] = [], salt = ''): BlendChunkRef[] {
  return texts.map((text, i) => {
    const tokenIds = tok.encode(text);
    if (tokenIds.length === 0) throw new InvalidArgumentError(`chunks.${i}: has no tokens`);
    return { key: chunkKey(fingerprint, tokenIds, salt), tokenIds };
  });
}

/**
 * A matched prompt's segments as chunk references: stored chunks as they are, the text between them
 * tokenized on its own and keyed like a raw chunk (text that encodes to no token is left out).
 */
function segmentRefs(
  tok: Tokenizer,
  fingerprint: string,
  segments: PromptSegment[],
  salt = '',
): BlendChunkRef[] {
  return segments.flatMap((s) => {
    if (!('text' in s)) return [s];
    const tokenIds = tok.encode(s.text);
    return tokenIds.length ? [{ key: chunkKey(fingerprint, tokenIds, salt), tokenIds }] : [];
  });
}

/** A matched prompt's frame: its segments hold the template already; the question's text ends it. */
function matchedFrame(tok: Tokenizer, job: BlendJobData): FrameIds {
  return {
    template: job.template === 'chat' ? 'chat' : 'none',
    prefixIds: [],
    suffixIds: tok.encode(job.question),
  };
}

/** The job's prompt frame and chunk references, checked against the model's context. */
function planPrompt(ctx: EngineContext, job: BlendJobData) {
  const { model, config: cfg, kvFingerprint } = ctx.engine;
  if (job.fingerprint !== kvFingerprint) {
    throw new KvMismatchError(
      `the job was made for model ${job.fingerprint.slice(0, 12)}, this worker runs ${kvFingerprint.slice(0, 12)}`,
    );
  }
  const frame = job.segments
    ? matchedFrame(model.tokenizer, job)
    : frameIds(model.tokenizer, {
        template: job.template ?? 'auto',
        system: job.system,
        history: job.history,
        question: job.question,
      });
  if (frame.suffixIds.length === 0) throw new InvalidArgumentError('question: has no tokens');
  const refs = job.segments
    ? segmentRefs(model.tokenizer, kvFingerprint, job.segments, job.salt)
    : [...job.chunks, ...rawChunkRefs(model.tokenizer, kvFingerprint, job.chunkTexts, job.salt)];
  const { prefixIds, suffixIds } = frame;
  const promptTokens = promptLength(
    prefixIds.length,
    refs.map((r) => r.tokenIds),
    suffixIds.length,
  );
  checkContextFits(promptTokens, job.maxTokens, cfg.maxPositionEmbeddings, {
    prompt: job.chunkTexts ? 'chunks' : job.segments ? 'question' : 'documents',
    maxTokens: 'maxTokens',
  });
  const prefixRef = prefixIds.length
    ? { key: chunkKey(kvFingerprint, prefixIds, job.salt), tokenIds: prefixIds }
    : null;
  return { frame, refs, prefixRef };
}

/**
 * The blend options of a job: its fixed ratio, or for `auto` the loading controller's inputs from the cost
 * model — the bytes of one layer of every cache read layer by layer from disk or the store (LRU hits and
 * caches just computed are in memory already).
 */
function blendOptions(
  ctx: EngineContext,
  job: BlendJobData,
  opened: LoadedChunk[],
): { opts: BlendOptions; autoRatio?: AutoRatio } {
  const { strategy, metric, attention, sinkTokens } = job.selection ?? {};
  const chosen = { selection: strategy, metric, attention, sinkTokens };
  if (job.ratio !== 'auto') return { opts: { mode: job.mode, ratio: job.ratio, ...chosen } };
  const { numKvHeads, headDim } = ctx.engine.config;
  const bytesPerValue = ctx.init.kvDtype === 'float16' ? 2 : 4;
  const tokensToLoad = opened
    .filter((c) => c.tier === 'disk' || c.tier === 'store')
    .reduce((a, c) => a + c.tokenIds.length, 0);
  const estimate = ctx.cost.estimate(tokensToLoad * numKvHeads * headDim * 2 * bytesPerValue);
  const minRatio = ctx.init.minRatio ?? DEFAULT_RATIO;
  const autoRatio = {
    minRatio,
    layerLoadMs: estimate?.layerLoadMs ?? null,
    tokenLayerMs: estimate?.tokenLayerMs ?? null,
  };
  if (!estimate) return { opts: { mode: job.mode, ratio: minRatio, ...chosen }, autoRatio };
  return { opts: { mode: job.mode, controller: { minRatio, ...estimate }, ...chosen }, autoRatio };
}

/** Throws CancelledError once the worker has set the job's cancel flag. */
function cancellation(cancel: Int32Array | undefined): () => void {
  return () => {
    if (cancel && Atomics.load(cancel, 0) === 1) throw new CancelledError('the query was cancelled');
  };
}

async function runBlend(
  ctx: EngineContext,
  job: BlendJobData,
  port?: MessagePort,
  cancel?: Int32Array,
): Promise<BlendThreadResult> {
  const { engine, loader, log } = ctx;
  const stopIfCancelled = cancellation(cancel);
  stopIfCancelled(); // it may have waited behind other calls on this thread
  const { frame, refs, prefixRef } = planPrompt(ctx, job);
  const stats = emptyCacheStats();
  const t0 = performance.now();
  const { parts, opened } = await openSources(loader, job.mode, prefixRef, refs, stats);
  const openMs = performance.now() - t0;
  stopIfCancelled();
  const { opts, autoRatio } = blendOptions(ctx, job, opened);
  const sampling = {
    maxTokens: job.maxTokens,
    temperature: job.temperature,
    topK: job.topK,
    topP: job.topP,
    seed: job.seed,
    stop: job.stop,
    ...(job.logprobs !== undefined && { logprobs: job.logprobs }),
  };
  const answer = await blendAndDecode(
    engine,
    { ...parts, suffixIds: frame.suffixIds },
    opts,
    sampling,
    withCancellation(stopIfCancelled, port && textStreamer(port)),
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
  const cachedTokens = opened.filter((c) => c.tier !== 'computed').reduce((a, c) => a + c.tokenIds.length, 0);
  let result = blendResult(job, answer, frame.template, openMs, stats, autoRatio, cachedTokens);
  if (answer.logprobs) {
    const prompt = [...(parts.chunks.at(-1)?.tokenIds ?? parts.prefix?.tokenIds ?? []), ...frame.suffixIds];
    result = {
      ...result,
      logprobs: logprobTexts(engine.model.tokenizer, prompt, answer.tokens, answer.logprobs),
    };
  }
  if (job.explain) {
    const chunkIds = refs.map((r) => r.tokenIds);
    result = { ...result, explain: explainContext(engine.model.tokenizer, chunkIds, answer.prefill) };
  }
  return result;
}

function blendResult(
  job: BlendJobData,
  { prefill, tokens, text, finishReason, decodeMs }: BlendAnswer,
  template: string,
  openMs: number,
  stats: CacheStats,
  autoRatio: AutoRatio | undefined,
  cachedTokens: number,
): BlendThreadResult {
  return {
    answer: text,
    tokens,
    mode: job.mode,
    finishReason,
    template,
    ttftMs: openMs + prefill.timings.ttftMs,
    promptTokens: prefill.promptTokens,
    prefixTokens: prefill.prefixTokens,
    contextTokens: prefill.contextTokens,
    recomputedTokens: prefill.recomputedTokens,
    cachedTokens,
    ...(job.mode === 'blend' && { ratio: prefill.ratio }),
    ...(job.mode === 'blend' && autoRatio && { autoRatio }),
    timings: {
      loadMs: openMs + prefill.timings.loadWaitMs,
      computeMs: prefill.timings.computeMs + decodeMs,
    },
    cache: stats,
    ...(job.retrieval && { retrieval: job.retrieval }),
    ...(job.matched && { matched: job.matched }),
  };
}

export type EngineHandlers = Awaited<ReturnType<typeof createHandlers>>;
