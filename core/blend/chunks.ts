/**
 * Chunk caches as blending consumes them: computed alone (BOS + the chunk's ids, stored without BOS's row),
 * held in memory, or known only by their tokens (full mode never reads a cache).
 */
import { InvalidArgumentError } from '../errors.js';
import type { Engine } from '../model/engine.js';
import type { KvCache } from '../model/host/kv-cache.js';
import type { KvValues } from '../kv/format.js';
import type { StoredKvLayer } from '../kv/stored.js';
import { float16ArrayToFloat32 } from '../util/half.js';
import type { ChunkKvSource } from './types.js';

export interface ChunkCacheData {
  tokenIds: number[];
  positions: Int32Array;
  /**
   * Per layer [tokens, kvHeads, headDim]: fp32, or the fp16 bits a float16 GPU computed (Uint16Array),
   * which an fp16 store writes as they are.
   */
  keys: KvValues[];
  values: KvValues[];
}

/** A chunk's cache computed alone: BOS + ids at positions 0…len, stored without BOS's row. */
export async function precomputeChunk(engine: Engine, tokenIds: readonly number[]): Promise<ChunkCacheData> {
  if (tokenIds.length === 0) throw new InvalidArgumentError('a chunk needs at least one token');
  if (engine.device) return (await precomputeChunks(engine, [tokenIds]))[0];
  const cache = engine.newCache(tokenIds.length + 1);
  await engine.forward(cache, [engine.config.bosTokenId, ...tokenIds], { logitRows: 'none' });
  const r = cache.rowSize;
  return {
    tokenIds: [...tokenIds],
    positions: cache.positions.slice(1, cache.length),
    keys: cache.keys.map((k) => k.slice(r, cache.length * r)),
    values: cache.values.map((v) => v.slice(r, cache.length * r)),
  };
}

/** Padded tokens per batched device run: 64 chunks of 1,024 (a few GiB of attention scores at most). */
const BATCH_TOKENS = 65536;

/**
 * Several chunks' caches. A device-resident engine computes them in batches (chunks of similar length
 * together, each batch padded to its longest); the host engine one after another.
 */
export async function precomputeChunks(
  engine: Engine,
  chunks: readonly (readonly number[])[],
): Promise<ChunkCacheData[]> {
  if (chunks.some((c) => c.length === 0)) throw new InvalidArgumentError('a chunk needs at least one token');
  const device = engine.device;
  if (!device) {
    const out: ChunkCacheData[] = [];
    for (const c of chunks) out.push(await precomputeChunk(engine, c));
    return out;
  }
  const order = chunks.map((_, i) => i).sort((a, b) => chunks[a].length - chunks[b].length);
  const out = new Array<ChunkCacheData>(chunks.length);
  const row = engine.config.numKvHeads * engine.config.headDim;
  const bos = engine.config.bosTokenId;
  for (let s = 0; s < order.length;) {
    // Sorted ascending, so the batch's last chunk is its longest: grow while the padded batch fits.
    let e = s + 1;
    while (e < order.length && (e + 1 - s) * (chunks[order[e]].length + 1) <= BATCH_TOKENS) e++;
    const batch = order.slice(s, e);
    const rows = await device.prefillBatch(batch.map((i) => [bos, ...chunks[i]]));
    batch.forEach((i, b) => {
      const n = chunks[i].length;
      out[i] = {
        tokenIds: [...chunks[i]],
        positions: Int32Array.from({ length: n }, (_, p) => p + 1),
        keys: rows[b].k.map((k) => k.subarray(row)),
        values: rows[b].v.map((v) => v.subarray(row)),
      };
    });
    s = e;
  }
  return out;
}

/** Cache values as fp32 (fp16 bits widened). */
export function asFloat32(a: KvValues): Float32Array {
  return a instanceof Float32Array ? a : float16ArrayToFloat32(a);
}

/** In-memory values in their stored form: fp16 bits stay fp16. */
function storedForm(k: KvValues, v: KvValues): StoredKvLayer {
  if (k instanceof Uint16Array && v instanceof Uint16Array) return { dtype: 'float16', k, v };
  return { dtype: 'float32', k: asFloat32(k), v: asFloat32(v) };
}

/** An in-memory ChunkKvSource. */
export function memorySource(data: ChunkCacheData): ChunkKvSource {
  return {
    tokenIds: data.tokenIds,
    layer: async (l) => ({ k: asFloat32(data.keys[l]), v: asFloat32(data.values[l]) }),
    storedLayer: async (l) => storedForm(data.keys[l], data.values[l]),
  };
}

/** A chunk known only by its tokens, for `full` mode, which never reads a cache. */
export function tokenIdsOnly(tokenIds: readonly number[]): ChunkKvSource {
  return {
    tokenIds,
    layer: () => Promise.reject(new Error('full mode reads no chunk cache')),
  };
}

const bosRows = new WeakMap<Engine, Promise<{ k: Float32Array[]; v: Float32Array[] }>>();

/** BOS at position 0 attends only to itself, so its K/V are the same in every prompt: computed once. */
function bosKv(engine: Engine): Promise<{ k: Float32Array[]; v: Float32Array[] }> {
  let p = bosRows.get(engine);
  if (!p) {
    p = (async () => {
      const c = engine.newCache(1);
      await engine.forward(c, [engine.config.bosTokenId], { logitRows: 'none' });
      return { k: c.keys.map((k) => k.slice(0, c.rowSize)), v: c.values.map((v) => v.slice(0, c.rowSize)) };
    })();
    bosRows.set(engine, p);
  }
  return p;
}

/** Write BOS's K/V into row 0 of every layer. */
export async function writeBosRows(engine: Engine, cache: KvCache): Promise<void> {
  const bos = await bosKv(engine);
  for (let l = 0; l < engine.config.numLayers; l++) cache.writeRows(l, 0, bos.k[l], bos.v[l]);
}
