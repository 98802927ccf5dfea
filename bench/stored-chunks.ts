import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChunkCacheData, ChunkKvSource } from '../core/blend/index.js';
import { emptyCacheStats } from '../core/cache/types.js';
import { TieredChunkLoader } from '../core/cache/tiered-loader.js';
import { chunkKey, chunkObjectKey, encodeChunkKv, type KvDtype } from '../core/kv/format.js';
import type { Engine } from '../core/model/engine.js';
import { FileObjectStore } from '../core/storage/file.js';

/** Chunk caches stored as fp16 objects in a temporary file store, opened as the blend worker opens them. */
export interface StoredChunks {
  /** The first `count` chunks (all by default), read layer by layer from the store. */
  open(count?: number): Promise<ChunkKvSource[]>;
  /** Remove the store. */
  close(): Promise<void>;
}

/**
 * Store every chunk (fp16, the worker's format) in a fresh temporary directory and open them through the
 * blend worker's own loader with the LRU and disk tiers off, so every layer comes from the store.
 */
export async function storedChunks(
  engine: Engine,
  chunks: readonly ChunkCacheData[],
  kvDtype: KvDtype = 'float16',
): Promise<StoredChunks> {
  const { model } = engine;
  const { numKvHeads: kvHeads, headDim, numLayers } = model.config;
  const dir = mkdtempSync(join(tmpdir(), 'cacheblend-bench-'));
  const store = new FileObjectStore(dir);
  const keys: string[] = [];
  for (const data of chunks) {
    const key = chunkKey(model.fingerprint, data.tokenIds);
    await store.put(
      chunkObjectKey(model.fingerprint, key),
      encodeChunkKv({ ...data, fingerprint: model.fingerprint, kvHeads, headDim }, kvDtype),
    );
    keys.push(key);
  }
  const loader = new TieredChunkLoader({
    store,
    disk: null,
    lruBytes: 0,
    fingerprint: model.fingerprint,
    numLayers,
    kvHeads,
    headDim,
    kvDtype,
    compute: () => Promise.reject(new Error('the benchmark stores every chunk beforehand')),
  });
  return {
    async open(count = chunks.length) {
      const stats = emptyCacheStats();
      const opened = await Promise.all(
        keys.slice(0, count).map((key, i) => loader.open(key, chunks[i].tokenIds, stats)),
      );
      if (stats.misses > 0 || stats.corrupt > 0) throw new Error('a stored chunk cache was not usable');
      return opened;
    },
    async close() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
