import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChunkCacheData } from '../core/blend/index.js';
import { DiskTier } from '../core/cache/disk-tier.js';
import { emptyCacheStats, type CacheTier } from '../core/cache/types.js';
import { TieredChunkLoader, type LoadedChunk } from '../core/cache/tiered-loader.js';
import {
  chunkKey,
  chunkObjectKey,
  encodeChunkKv,
  widenStoredLayer,
  type KvDtype,
} from '../core/kv/format.js';
import { storedLayerBytes } from '../core/kv/stored.js';
import type { Engine } from '../core/model/engine.js';
import { FileObjectStore } from '../core/storage/file.js';
import type { ObjectStore } from '../core/storage/types.js';

/**
 * Where the benchmark keeps the chunk caches, each opened through the blend worker's own loader:
 * `lru` the in-process LRU (whole objects in RAM, decoded layer by layer), `disk` the disk tier, `file`
 * a file store as the object store (LRU and disk off), `s3` an S3 server as the object store.
 */
export type StoredTier = 'lru' | 'disk' | 'file' | 's3';

/** Chunk caches stored as objects in one tier, opened as the blend worker opens them. */
export interface StoredChunks {
  readonly tier: StoredTier;
  readonly kvDtype: KvDtype;
  /** The first `count` chunks (all by default), each found in the tier. */
  open(count?: number): Promise<LoadedChunk[]>;
  /**
   * Read every layer of the first `count` chunks with nothing else running: bytes, the time reading them
   * (disk or store reads; 0 from the LRU) and decoding them (checksum, aligned copy, widening to fp32).
   */
  loadBreakdown(count?: number): Promise<LoadBreakdown>;
  /** Remove what the tier wrote. */
  close(): Promise<void>;
}

export interface LoadBreakdown {
  bytes: number;
  readMs: number;
  decodeMs: number;
  /** bytes / readMs; null when nothing was read (the LRU). */
  readGBps: number | null;
  decodeGBps: number;
}

const LOADER_TIER: Record<StoredTier, CacheTier> = { lru: 'lru', disk: 'disk', file: 'store', s3: 'store' };

/**
 * Store every chunk in `kvDtype` in the given tier and open them through the blend worker's loader. For
 * `s3`, `s3Store` is the store to use (a bucket on a loopback server, see s3-loopback.ts).
 */
export async function storedChunks(
  engine: Engine,
  chunks: readonly ChunkCacheData[],
  opts: { kvDtype?: KvDtype; tier?: StoredTier; s3Store?: ObjectStore } = {},
): Promise<StoredChunks> {
  const { kvDtype = 'float16', tier = 'file' } = opts;
  const { model } = engine;
  const { numKvHeads: kvHeads, headDim, numLayers } = model.config;
  const dir = mkdtempSync(join(tmpdir(), 'cacheblend-bench-'));
  if (tier === 's3' && !opts.s3Store) throw new Error('the s3 tier needs an S3 store');
  const store = tier === 's3' ? opts.s3Store! : new FileObjectStore(join(dir, 'store'));
  const disk = tier === 'disk' ? new DiskTier(join(dir, 'disk'), 2 ** 40) : null;
  const keys: string[] = [];
  for (const data of chunks) {
    const key = chunkKey(model.fingerprint, data.tokenIds);
    const buf = encodeChunkKv({ ...data, fingerprint: model.fingerprint, kvHeads, headDim }, kvDtype);
    await (disk ?? store).put(chunkObjectKey(model.fingerprint, key), buf);
    keys.push(key);
  }
  let readMs = 0;
  const loader = new TieredChunkLoader({
    store,
    disk,
    lruBytes: tier === 'lru' ? 2 ** 40 : 0,
    fingerprint: model.fingerprint,
    numLayers,
    kvHeads,
    headDim,
    kvDtype,
    compute: () => Promise.reject(new Error('the benchmark stores every chunk beforehand')),
    onLayerLoad: (_bytes, ms) => (readMs += ms),
  });
  // The LRU holds what a query read before: read each object once.
  if (tier === 'lru') {
    for (const [i, key] of keys.entries())
      await loader.loadObject(key, chunks[i].tokenIds, emptyCacheStats());
  }
  const open = async (count = chunks.length) => {
    const stats = emptyCacheStats();
    const opened = await Promise.all(
      keys.slice(0, count).map((key, i) => loader.open(key, chunks[i].tokenIds, stats)),
    );
    if (stats.hits[LOADER_TIER[tier]] !== count) throw new Error(`a chunk cache was not in the ${tier} tier`);
    return opened;
  };
  return {
    tier,
    kvDtype,
    open,
    async loadBreakdown(count = chunks.length) {
      const opened = await open(count);
      readMs = 0;
      let bytes = 0;
      let totalMs = 0;
      for (let l = 0; l < numLayers; l++) {
        for (const c of opened) {
          const t0 = performance.now();
          const stored = await c.storedLayer(l);
          widenStoredLayer(stored);
          totalMs += performance.now() - t0;
          bytes += storedLayerBytes(stored);
        }
      }
      const decodeMs = totalMs - readMs;
      return {
        bytes,
        readMs,
        decodeMs,
        readGBps: readMs > 0 ? bytes / readMs / 1e6 : null,
        decodeGBps: bytes / decodeMs / 1e6,
      };
    },
    async close() {
      if (tier === 's3') for (const key of keys) await store.delete(chunkObjectKey(model.fingerprint, key));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
