/**
 * The inference thread's handlers (see core/runtime/inference-thread.ts): the model, the engine and the
 * tiered chunk-cache loader live on the thread, so neither inference nor KV decoding ever blocks the
 * process's main thread (HTTP, BullMQ lock renewal). Also usable in-process (tests call createHandlers).
 */
import type { MessagePort } from 'node:worker_threads';
import { tokenIdsOnly, type ChunkKvSource } from '../blend/index.js';
import type { KvDtype, S3Settings } from '../config/index.js';
import { InvalidArgumentError, KvMismatchError, errorMessage } from '../errors.js';
import { Engine, type ExecutionProvider } from '../model/engine.js';
import { loadModel } from '../model/load.js';
import { emptyCacheStats } from '../cache/types.js';
import type { BlendJobData, BlendJobResult, BlendProgress } from '../queue/contracts.js';
import { FileObjectStore, openObjectStore } from '../storage/index.js';
import { TieredChunkLoader, type LoadedChunk } from '../cache/tiered-loader.js';
import { createLogger, type LogLevel } from '../ops/log.js';
import { answerText, blendAndDecode, computeChunkObject, promptIds } from './pipeline.js';

export interface EngineThreadInit {
  model: string;
  modelPath: readonly string[];
  executionProvider: ExecutionProvider;
  /** onnxruntime intra-op threads (0: onnxruntime decides). */
  threads: number;
  kvStoreUrl: string;
  s3: S3Settings;
  /** Disk cache directory; null disables the tier. */
  diskCacheDir: string | null;
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

export async function createHandlers(init: EngineThreadInit) {
  const log = createLogger(init.logLevel, 'engine');
  const model = await loadModel(init.model, { searchPath: [...init.modelPath] });
  const engine = await Engine.create(model, {
    executionProvider: init.executionProvider,
    threads: init.threads,
  });
  const cfg = model.config;
  const tok = model.tokenizer;
  const store = openObjectStore(init.kvStoreUrl, { s3: init.s3 });
  const disk = init.diskCacheDir ? new FileObjectStore(init.diskCacheDir) : null;
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
        return await runBlend(job, port);
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

    async close(): Promise<void> {
      await loader.flush();
      await store.close();
      await engine.dispose();
    },
  };

  async function runBlend(job: BlendJobData, port?: MessagePort): Promise<BlendThreadResult> {
    if (job.fingerprint !== model.fingerprint) {
      throw new KvMismatchError(
        `the job was made for model ${job.fingerprint.slice(0, 12)}, this worker runs ${model.fingerprint.slice(0, 12)}`,
      );
    }
    const questionIds = tok.encode(job.question);
    if (questionIds.length === 0) throw new InvalidArgumentError('question: has no tokens');
    const promptTokens = 1 + job.chunks.reduce((a, c) => a + c.tokenIds.length, 0) + questionIds.length;
    if (promptTokens + job.maxTokens > cfg.maxPositionEmbeddings) {
      const field = promptTokens > cfg.maxPositionEmbeddings ? 'documents' : 'maxTokens';
      throw new InvalidArgumentError(
        `${field}: the prompt (${promptTokens} tokens) plus maxTokens (${job.maxTokens}) exceeds the model's context of ${cfg.maxPositionEmbeddings} tokens`,
      );
    }
    const stats = emptyCacheStats();
    const t0 = performance.now();
    let opened: LoadedChunk[] = [];
    let sources: ChunkKvSource[];
    if (job.mode === 'full') {
      sources = job.chunks.map((c) => tokenIdsOnly(c.tokenIds));
    } else if (job.mode === 'prefix') {
      // Prefix caching reuses only the first chunk's cache; the rest is prefilled.
      opened = job.chunks.length ? [await loader.open(job.chunks[0].key, job.chunks[0].tokenIds, stats)] : [];
      sources = [...opened, ...job.chunks.slice(1).map((c) => tokenIdsOnly(c.tokenIds))];
    } else {
      opened = await Promise.all(job.chunks.map((c) => loader.open(c.key, c.tokenIds, stats)));
      sources = opened;
    }
    const openMs = performance.now() - t0;

    const prompt = promptIds(cfg.bosTokenId, sources, questionIds);
    const generated: number[] = [];
    let onToken: ((id: number) => void) | undefined;
    if (port) {
      const base = tok.decode(prompt).length;
      let sent = '';
      onToken = (id) => {
        generated.push(id);
        const text = tok.decode([...prompt, ...generated]).slice(base);
        // Hold back a trailing partial UTF-8 character; never retract text already sent.
        const stable = text.replace(/\uFFFD+$/, '');
        if (stable.length > sent.length && stable.startsWith(sent)) {
          const msg: BlendProgress = { delta: stable.slice(sent.length), tokens: generated.length };
          sent = stable;
          port.postMessage(msg);
        }
      };
    }
    const { prefill, tokens, decodeMs } = await blendAndDecode(
      engine,
      sources,
      questionIds,
      { mode: job.mode, ratio: job.ratio },
      { maxTokens: job.maxTokens, temperature: job.temperature, seed: job.seed },
      onToken,
    );
    const answer = answerText(tok, prompt, tokens);
    // Fill the LRU and disk tiers with whole objects (blend skips the layers below its check layer).
    await Promise.all(
      opened.map((c) =>
        c
          .complete()
          .catch((err) =>
            log.warn('could not complete a chunk cache', { key: c.key, error: errorMessage(err) }),
          ),
      ),
    );
    return {
      answer,
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
}

export type EngineHandlers = Awaited<ReturnType<typeof createHandlers>>;
