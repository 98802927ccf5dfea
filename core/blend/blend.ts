import { InvalidArgumentError } from '../errors.js';
import { rotateKeys } from '../kv/rope.js';
import { buildMask, concatFloat32, type Engine } from '../model/engine.js';
import type { KvCache } from '../model/kv-cache.js';
import { controllerRatio } from './controller.js';
import type { BlendOptions, BlendPrefill, ChunkKvSource, DeviationMetric } from './types.js';

/**
 * CacheBlend prefill over precomputed chunk caches, and the three baselines, all building the same prompt
 * `BOS + ids(c1) + … + ids(cn) + ids(q)` at positions 0…N-1 so modes differ only in what they recompute.
 *
 * Cache rows follow prompt order: row 0 is BOS, then each chunk's tokens, then the question. Chunk caches
 * were computed alone after BOS (keys at positions 1…len) and are rotated to the chunk's real offset here.
 */

export interface ChunkCacheData {
  tokenIds: number[];
  positions: Int32Array;
  keys: Float32Array[];
  values: Float32Array[];
}

/** A chunk's cache computed alone: BOS + ids at positions 0…len, stored without BOS's row. */
export async function precomputeChunk(engine: Engine, tokenIds: readonly number[]): Promise<ChunkCacheData> {
  if (tokenIds.length === 0) throw new InvalidArgumentError('a chunk needs at least one token');
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

/** An in-memory ChunkKvSource. */
export function memorySource(data: ChunkCacheData): ChunkKvSource {
  return {
    tokenIds: data.tokenIds,
    layer: async (l) => ({ k: data.keys[l], v: data.values[l] }),
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

/** BOS at position 0 attends only to itself, so its K/V are the same in every prompt: compute them once. */
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

export function validateBlendOptions(o: BlendOptions, numLayers: number): void {
  const ratioOk = (r: number) => typeof r === 'number' && r >= 0 && r <= 1;
  if (o.ratio !== undefined && !ratioOk(o.ratio)) throw new InvalidArgumentError('ratio must be in [0, 1]');
  const check = o.checkLayer ?? 1;
  if (!Number.isInteger(check) || check < 0 || check >= numLayers) {
    throw new InvalidArgumentError(`checkLayer must be an integer in [0, ${numLayers - 1}]`);
  }
  if (o.gradualRatios) {
    if (o.gradualRatios.length === 0 || !o.gradualRatios.every(ratioOk)) {
      throw new InvalidArgumentError('gradualRatios must be a non-empty list of ratios in [0, 1]');
    }
    for (let i = 1; i < o.gradualRatios.length; i++) {
      if (o.gradualRatios[i] > o.gradualRatios[i - 1])
        throw new InvalidArgumentError('gradualRatios must not grow');
    }
  }
}

/** Deviation of each listed token: squared L2 distance of fresh vs cached rows (K, V or both). */
export function deviations(
  metric: DeviationMetric,
  rowSize: number,
  fresh: { k: Float32Array; v: Float32Array },
  cachedK: Float32Array,
  cachedV: Float32Array,
  rows: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    let d = 0;
    const f = i * rowSize;
    const c = rows[i] * rowSize;
    if (metric !== 'v') for (let j = 0; j < rowSize; j++) d += (fresh.k[f + j] - cachedK[c + j]) ** 2;
    if (metric !== 'k') for (let j = 0; j < rowSize; j++) d += (fresh.v[f + j] - cachedV[c + j]) ** 2;
    out[i] = d;
  }
  return out;
}

/** Indices (into `scores`) of the `count` largest scores, returned in ascending index order. */
export function topK(scores: Float64Array, count: number): number[] {
  const idx = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b);
  return idx.slice(0, count).sort((a, b) => a - b);
}

/**
 * Block size for the selective layers. The selected tokens are spread over the whole prompt; on the CPU,
 * splitting them into four position-ordered blocks lets early blocks skip the keys after them (as causal
 * prefill does), at the price of smaller matrix products: blend at 4×512 went from 864 to 774 ms. On a GPU
 * provider every extra run copies the cache to the device again, so there it runs as few blocks as it can.
 */
function selectiveBlock(engine: Engine, active: number): number {
  const B = engine.prefillBlock;
  return engine.executionProvider === 'cpu' ? Math.min(B, Math.max(64, Math.ceil(active / 4))) : B;
}

interface Layout {
  promptIds: number[];
  /** Prompt index where each chunk starts. */
  offsets: number[];
  contextEnd: number; // index of the first question token
}

function layout(bos: number, chunks: readonly ChunkKvSource[], question: readonly number[]): Layout {
  const promptIds = [bos];
  const offsets: number[] = [];
  for (const c of chunks) {
    if (c.tokenIds.length === 0) throw new InvalidArgumentError('a chunk has no tokens');
    offsets.push(promptIds.length);
    promptIds.push(...c.tokenIds);
  }
  const contextEnd = promptIds.length;
  promptIds.push(...question);
  return { promptIds, offsets, contextEnd };
}

/**
 * Load every chunk's layer `l` into rows 1…contextEnd-1 of the cache, keys re-rotated from positions
 * 1…len to the chunk's real offset. Returns the time spent waiting on the sources.
 */
async function fillLayer(
  engine: Engine,
  cache: KvCache,
  l: number,
  chunks: readonly ChunkKvSource[],
  offsets: number[],
  pending: Map<string, Promise<{ k: Float32Array; v: Float32Array }>>,
): Promise<number> {
  const { numKvHeads: KV, headDim: hd, ropeLayout } = engine.config;
  let waited = 0;
  for (let c = 0; c < chunks.length; c++) {
    const key = `${c}:${l}`;
    const t0 = performance.now();
    const { k, v } = await (pending.get(key) ?? chunks[c].layer(l));
    waited += performance.now() - t0;
    pending.delete(key);
    const n = chunks[c].tokenIds.length;
    // Copy into the cache, then rotate there: the source (an LRU entry, say) must stay as stored.
    cache.writeRows(l, offsets[c], k.subarray(0, n * KV * hd), v.subarray(0, n * KV * hd));
    const rows = cache.keys[l].subarray(offsets[c] * KV * hd, (offsets[c] + n) * KV * hd);
    rotateKeys(rows, n, KV, hd, ropeLayout, engine.invFreq, offsets[c] - 1);
  }
  return waited;
}

/** Ask every source for layer `l` now, so its bytes arrive while earlier layers compute. */
function prefetch(
  chunks: readonly ChunkKvSource[],
  l: number,
  numLayers: number,
  pending: Map<string, Promise<{ k: Float32Array; v: Float32Array }>>,
): void {
  if (l >= numLayers) return;
  chunks.forEach((c, i) => {
    const key = `${i}:${l}`;
    if (!pending.has(key)) {
      const p = c.layer(l);
      p.catch(() => undefined); // observed when awaited; avoid an unhandled rejection meanwhile
      pending.set(key, p);
    }
  });
}

/**
 * Prefill the prompt in the requested mode. Returns a cache holding the whole prompt (ready for decoding)
 * and the first token's logits.
 */
export async function blendPrefill(
  engine: Engine,
  chunks: readonly ChunkKvSource[],
  questionIds: readonly number[],
  opts: BlendOptions,
  extraCapacity = 0,
): Promise<{ cache: KvCache; prefill: BlendPrefill }> {
  const cfg = engine.config;
  validateBlendOptions(opts, cfg.numLayers);
  if (questionIds.length === 0) throw new InvalidArgumentError('the question has no tokens');
  const t0 = performance.now();
  const lay = layout(cfg.bosTokenId, chunks, questionIds);
  const N = lay.promptIds.length;
  const contextTokens = lay.contextEnd - 1;
  // Prompt index = RoPE position for every row; views of this one array serve every mode.
  const promptPositions = Int32Array.from({ length: N }, (_, i) => i);
  const cache = engine.newCache(N + extraCapacity);
  const result = (
    firstTokenLogits: Float32Array,
    recomputedTokens: number,
    ratio: number,
    loadWaitMs: number,
    selected?: Int32Array[],
  ) => {
    const ttftMs = performance.now() - t0;
    return {
      cache,
      prefill: {
        mode: opts.mode,
        promptTokens: N,
        contextTokens,
        recomputedTokens,
        ratio,
        firstTokenLogits,
        timings: { ttftMs, loadWaitMs, computeMs: ttftMs - loadWaitMs },
        ...(selected && { selected }),
      },
    };
  };

  if (opts.mode === 'full') {
    const logits = await engine.forward(cache, lay.promptIds);
    return result(logits, contextTokens, 1, 0);
  }

  const pending = new Map<string, Promise<{ k: Float32Array; v: Float32Array }>>();
  const bos = await bosKv(engine);
  cache.reserve(N);

  if (opts.mode === 'prefix') {
    // BOS and the first chunk sit exactly where they were precomputed; prefill everything after them.
    const first = chunks.length > 0 ? [chunks[0]] : [];
    const end = first.length ? lay.offsets[0] + first[0].tokenIds.length : 1;
    let waited = 0;
    for (let l = 0; l < cfg.numLayers; l++) {
      cache.writeRows(l, 0, bos.k[l], bos.v[l]);
      prefetch(first, l + 1, cfg.numLayers, pending);
      waited += await fillLayer(engine, cache, l, first, lay.offsets, pending);
    }
    cache.commit(promptPositions.subarray(0, end));
    const logits = await engine.forward(cache, lay.promptIds.slice(end));
    return result(logits, lay.contextEnd - end, 1, waited);
  }

  // reuse and blend: every chunk's cache, rotated into place.
  const ratio = opts.controller
    ? controllerRatio({ ...opts.controller, contextTokens })
    : (opts.gradualRatios?.[0] ?? opts.ratio ?? 0.15);
  const checkLayer = opts.mode === 'blend' ? (opts.checkLayer ?? 1) : 0;
  let waited = 0;
  prefetch(chunks, checkLayer, cfg.numLayers, pending);
  for (let l = 0; l < cfg.numLayers; l++) cache.writeRows(l, 0, bos.k[l], bos.v[l]);

  if (opts.mode === 'reuse') {
    for (let l = 0; l < cfg.numLayers; l++) {
      prefetch(chunks, l + 1, cfg.numLayers, pending);
      waited += await fillLayer(engine, cache, l, chunks, lay.offsets, pending);
    }
    cache.commit(promptPositions.subarray(0, lay.contextEnd));
    const logits = await engine.forward(cache, questionIds);
    return result(logits, 0, 0, waited);
  }

  // blend. Layers below the check layer: recompute every token (their cached rows are never loaded).
  const D = cfg.hiddenSize;
  const row = cache.rowSize;
  let active: Int32Array = promptPositions.subarray(1); // prompt indices computed at the current layer
  let hidden = engine.embed(lay.promptIds.slice(1));
  // In prefill-sized blocks, as Engine.forward does: each block attends to BOS, the earlier blocks' fresh
  // rows of this layer, and itself.
  const B = engine.prefillBlock;
  for (let l = 0; l < checkLayer; l++) {
    const outs: Float32Array[] = [];
    for (let s = 0; s < N - 1; s += B) {
      const e = Math.min(N - 1, s + B);
      const idx = active.subarray(s, e);
      const r = await engine.runLayer(
        l,
        hidden.subarray(s * D, e * D),
        engine.rope(idx),
        cache.keys[l].subarray(0, (s + 1) * row),
        cache.values[l].subarray(0, (s + 1) * row),
        buildMask(idx, promptPositions.subarray(0, s + 1)),
      );
      cache.writeRows(l, s + 1, r.k, r.v);
      outs.push(r.hidden);
    }
    hidden = concatFloat32(outs);
  }

  const ratios = opts.gradualRatios ?? [ratio];
  const selected: Int32Array[] = [];
  for (let l = checkLayer; l < cfg.numLayers; l++) {
    prefetch(chunks, l + 1, cfg.numLayers, pending);
    waited += await fillLayer(engine, cache, l, chunks, lay.offsets, pending);
    const r = ratios[Math.min(l - checkLayer, ratios.length - 1)];
    const target = Math.round(r * contextTokens);
    // Context tokens still active; the question tokens are always computed.
    const activeCtx = active.filter((i) => i < lay.contextEnd);
    if (target < activeCtx.length) {
      // Fresh K/V of the still-active context tokens from their input to this layer: at the check layer
      // that is every context token; under gradual filtering, the previous layer's survivors.
      const ctxCount = activeCtx.length;
      const fresh = await engine.projectKv(l, hidden.subarray(0, ctxCount * D), engine.rope(activeCtx));
      const dev = deviations(opts.metric ?? 'k', row, fresh, cache.keys[l], cache.values[l], activeCtx);
      opts.adjustDeviations?.(l, activeCtx, dev);
      const keep = topK(dev, target);
      const nextActive = new Int32Array(keep.length + (active.length - ctxCount));
      const nextHidden = new Float32Array(nextActive.length * D);
      keep.forEach((k, i) => {
        nextActive[i] = activeCtx[k];
        nextHidden.set(hidden.subarray(k * D, (k + 1) * D), i * D);
      });
      for (let q = ctxCount; q < active.length; q++) {
        const i = keep.length + q - ctxCount;
        nextActive[i] = active[q];
        nextHidden.set(hidden.subarray(q * D, (q + 1) * D), i * D);
      }
      active = nextActive;
      hidden = nextHidden;
    }
    // Active tokens attend by position over the whole mixed cache. Rows of active tokens not computed yet
    // at this layer (stale context rows, unwritten question rows) stay hidden; blocks of prefill size keep
    // the score tensors small, each block seeing the fresh rows the blocks before it wrote.
    const notYetComputed = new Uint8Array(N);
    for (const i of active) notYetComputed[i] = 1;
    const outs: Float32Array[] = [];
    const block = selectiveBlock(engine, active.length);
    for (let s = 0; s < active.length; s += block) {
      const idx = active.subarray(s, Math.min(active.length, s + block));
      // Active tokens are in prompt order, so this block needs only the rows up to its last token.
      const end = idx[idx.length - 1] + 1;
      const out = await engine.runLayer(
        l,
        hidden.subarray(s * D, (s + idx.length) * D),
        engine.rope(idx),
        cache.keys[l].subarray(0, end * row),
        cache.values[l].subarray(0, end * row),
        buildMask(idx, promptPositions.subarray(0, end), notYetComputed.subarray(0, end)),
      );
      cache.writeRowsAt(l, idx, out.k, out.v);
      for (const i of idx) notYetComputed[i] = 0;
      outs.push(out.hidden);
    }
    hidden = concatFloat32(outs);
    selected.push(active.filter((i) => i < lay.contextEnd));
  }
  cache.commit(promptPositions);
  const logits = await engine.logits(hidden.subarray(hidden.length - D));
  return result(logits, selected[0].length, ratio, waited, selected);
}
