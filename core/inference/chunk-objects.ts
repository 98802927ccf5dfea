/**
 * A chunk's cache as the service stores it: precomputed by the engine and encoded in the stored object
 * format (core/kv/format.ts), the exact bytes the precompute worker writes; and decoded back, as a blend
 * worker reads it.
 */
import {
  memorySource,
  precomputeChunk,
  precomputeChunks,
  type ChunkCacheData,
  type ChunkKvSource,
} from '../blend/index.js';
import { decodeChunkKv, encodeChunkKv, type KvDtype } from '../kv/format.js';
import type { Engine } from '../model/engine.js';

/** Encode a precomputed chunk cache in the stored object format. */
export function encodeChunkCache(engine: Engine, data: ChunkCacheData, dtype: KvDtype): Buffer {
  return encodeChunkKv(
    {
      ...data,
      fingerprint: engine.kvFingerprint,
      kvHeads: engine.config.numKvHeads,
      headDim: engine.config.headDim,
    },
    dtype,
  );
}

/** Precompute a chunk and encode it: exactly the bytes the precompute worker stores. */
export async function computeChunkObject(
  engine: Engine,
  ids: readonly number[],
  dtype: KvDtype,
): Promise<Buffer> {
  return encodeChunkCache(engine, await precomputeChunk(engine, ids), dtype);
}

/** Several chunks' encoded objects; a device-resident engine computes them in batches. */
export async function computeChunkObjects(
  engine: Engine,
  ids: readonly (readonly number[])[],
  dtype: KvDtype,
): Promise<Buffer[]> {
  return (await precomputeChunks(engine, ids)).map((data) => encodeChunkCache(engine, data, dtype));
}

/** A chunk's cache as the service would hold it: precomputed, then encoded and decoded in `dtype`. */
export async function storedChunk(engine: Engine, ids: number[], dtype: KvDtype): Promise<ChunkKvSource> {
  const data = await precomputeChunk(engine, ids);
  const { kv } = decodeChunkKv(encodeChunkCache(engine, data, dtype));
  return memorySource({ ...data, keys: kv.keys, values: kv.values });
}
