/**
 * The inference thread's handlers (see core/runtime/inference-thread.ts): the model, the engine and the
 * tiered chunk-cache loader live on the thread, so neither inference nor KV decoding ever blocks the
 * process's main thread (HTTP, BullMQ lock renewal). Also usable in-process (tests call createHandlers).
 * A blend job arrives planned (prompt-plan.ts) and runs in blend-job.ts.
 */
import type { MessagePort } from 'node:worker_threads';
import { InvalidArgumentError } from '../errors.js';
import type { BlendJobData } from '../queue/contracts.js';
import { openGate, runGated } from './calibration-gate.js';
import {
  openEngine,
  type BlendThreadResult,
  type EngineInfo,
  type EngineThreadInit,
} from './engine-context.js';
import { computeChunkObject, computeChunkObjects } from './chunk-objects.js';

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
        return await runGated(ctx, gate, job, port, cancel);
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
      await ctx.chunkWrites?.close();
      await disk?.close();
      await store.close();
      await engine.dispose();
    },
  };
}

export type EngineHandlers = Awaited<ReturnType<typeof createHandlers>>;
