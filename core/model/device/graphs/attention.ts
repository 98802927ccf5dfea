import type { LayerWeights } from '../../types.js';
import type { GraphBuilder } from '../../onnx/builder.js';
import {
  ropeCaches,
  type CacheMode,
  type Ctx,
  type SelectiveAttention,
  type StackGraphOptions,
} from './context.js';
import { projectPacked, projectQkv, toHeads } from './projections.js';

export interface LayerCacheIo {
  mode: CacheMode;
  /** past_k/v (append) or cache_k/v (scatter) input names, [B, KV, rows, hd]. */
  k?: string;
  v?: string;
  /** scatter: which cache rows the new rows replace (bool [rows]) and from which new row (int64 [rows]). */
  rowNew?: string;
  rowSrc?: string;
  /** The additive mask [T, rows]. */
  mask?: string;
  /** scatter with fused attention: the mask as the kernel's bias ([1, 1, T, keys]). */
  bias?: string;
  selective?: SelectiveAttention;
  /** none/append: GroupQueryAttention's seqlens_k [B] and total_sequence_length []. */
  seqlens?: string;
  total?: string;
  /** scatter: the cache the layer attends over, from the new rows' fresh K/V [B, T, KV*hd] (blend's shift). */
  adjust?: (io: LayerCacheIo, k: string, v: string) => { k: string; v: string };
}

/**
 * Causal attention of T new tokens after S cached rows through onnxruntime's GroupQueryAttention (flash
 * attention where the adapter allows), from the packed projection: the kernel applies RoPE itself at the
 * positions its lengths imply (S + i), and returns the cache with the new rows appended. One kernel where
 * a split and two RotaryEmbeddings were (every kernel costs ~16 µs on WebGPU, see docs/gpu.md).
 */
export function causalAttention(c: Ctx, io: LayerCacheIo, w: LayerWeights, prefix: string, h: string) {
  const { g, cfg } = c;
  const past = io.mode === 'append' ? [io.k!, io.v!] : ['', ''];
  const heads = { num_heads: cfg.numHeads, kv_num_heads: cfg.numKvHeads };
  let outs: string[];
  if (cfg.headDim % 16 === 0) {
    const { proj } = projectPacked(c, w, prefix, h, true);
    const tables = ropeCaches(c);
    const rotaryAttrs = { do_rotary: 1, rotary_interleaved: cfg.ropeLayout === 'interleaved' ? 1 : 0 };
    const inputs = [proj, '', '', ...past, io.seqlens!, io.total!, tables.cos, tables.sin];
    outs = g.op('GroupQueryAttention', inputs, { ...heads, ...rotaryAttrs }, 3, 'com.microsoft');
  } else {
    // The kernel's own RoPE wants head sizes in multiples of 16 (onnxruntime's WebGPU provider).
    const { q, k, v } = projectQkv(c, w, prefix, h, true);
    outs = g.op(
      'GroupQueryAttention',
      [q!, k, v, ...past, io.seqlens!, io.total!],
      heads,
      3,
      'com.microsoft',
    );
  }
  const [out, kAll, vAll] = outs;
  return { out, kAll, vAll };
}

/**
 * Scaled scores of q [B, T, H*hd] against keys [B, KV, rows, hd], each query head against the KV head of
 * its group: [B, KV, G*T, rows] (G = H / KV, heads of a group before queries).
 */
export function groupedScores(c: Ctx, q: string, keys: string): string {
  const { g, cfg } = c;
  const { numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  const G = H / KV;
  const qs = g.o('Mul', [q, g.scalar(1 / Math.sqrt(hd), 'scale', c.t)]);
  const q5 = g.o('Reshape', [qs, g.int64s([0, 0, KV, G, hd])]);
  const qg = g.o('Reshape', [g.o('Transpose', [q5], { perm: [0, 2, 3, 1, 4] }), g.int64s([0, KV, -1, hd])]);
  return g.o('MatMul', [qg, g.o('Transpose', [keys], { perm: [0, 1, 3, 2] })]);
}

/** Attention of q [B, T, H*hd] over kAll/vAll [B, KV, rows, hd] with an additive mask [T, rows]. */
function maskedAttention(c: Ctx, q: string, kAll: string, vAll: string, mask: string): string {
  const { g, cfg } = c;
  const { numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  const G = H / KV;
  const scores = groupedScores(c, q, kAll); // [B, KV, G*T, rows]
  const shape5 = g.o('Concat', [g.int64s([0, KV, G]), g.o('Shape', [mask])], { axis: 0 });
  const masked = g.o('Add', [c.high(g.o('Reshape', [scores, shape5])), mask]);
  const probs = c.low(g.o('Reshape', [g.o('Softmax', [masked], { axis: -1 }), g.o('Shape', [scores])]));
  const ctx5 = g.o('Reshape', [g.o('MatMul', [probs, vAll]), g.int64s([0, KV, G, -1, hd])]);
  return g.o('Reshape', [g.o('Transpose', [ctx5], { perm: [0, 3, 1, 2, 4] }), g.int64s([0, 0, -1])]);
}

/**
 * CacheBlend's selective attention: the new rows overwrite their rows of the full cache, then every new
 * token attends over the cache by position (the mask). No fused kernel takes grouped K/V heads with an
 * arbitrary mask, so 'fused' repeats the K/V heads for onnxruntime's MultiHeadAttention (flash attention
 * with an additive bias where the adapter allows); 'decomposed' spells the attention out.
 */
export function scatterAttention(c: Ctx, io: LayerCacheIo, q: string, k: string, v: string) {
  const { g, cfg } = c;
  const { numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  // Row r of the result is fresh row row_src[r] where row_new[r], else the cache's row r: a gather and
  // a select, O(rows). (onnxruntime's WebGPU ScatterND checks its indices for duplicates in every thread,
  // quadratic in the number of rows: slower than the whole layer.)
  const isNew = io.rowNew!;
  const merge = (cache: string, fresh: string) =>
    g.o('Where', [isNew, g.o('Gather', [toHeads(c, fresh, KV), io.rowSrc!], { axis: 2 }), cache]);
  if (io.selective === 'gqa') return selectiveGqa(c, io, q, k, v, isNew);
  const kAll = merge(io.k!, k);
  const vAll = merge(io.v!, v);
  if (!io.bias) return { out: maskedAttention(c, q, kAll, vAll, io.mask!), kAll, vAll };
  const repeat = (t: string) =>
    g.o('Reshape', [
      g.o('Expand', [g.o('Unsqueeze', [t, g.int64s([2])]), g.int64s([1, 1, H / KV, 1, 1])]),
      g.int64s([1, H, -1, hd]),
    ]);
  // Present outputs requested: onnxruntime's WebGPU kernel takes its flash path only with them.
  const [out] = g.op(
    'MultiHeadAttention',
    [q, repeat(kAll), repeat(vAll), '', '', io.bias],
    { num_heads: H },
    3,
    'com.microsoft',
  );
  return { out, kAll, vAll };
}

/**
 * Selective attention through GroupQueryAttention, as the host engine computes it: the cache as it stands
 * is the past, the new rows come after it, and the bias hides the active tokens' stale rows and every key
 * after a query's position. The cache after the layer takes the new rows from the kernel's present output.
 */
function selectiveGqa(c: Ctx, io: LayerCacheIo, q: string, k: string, v: string, isNew: string) {
  const { g, cfg } = c;
  const [out, presentK, presentV] = g.op(
    'GroupQueryAttention',
    [q, k, v, io.k!, io.v!, io.seqlens!, io.total!, '', '', '', io.bias!],
    { num_heads: cfg.numHeads, kv_num_heads: cfg.numKvHeads },
    3,
    'com.microsoft',
  );
  // Present rows N + i are the new rows; for this kernel row_src holds N + i.
  const merge = (present: string, cache: string) =>
    g.o('Where', [isNew, g.o('Gather', [present, io.rowSrc!], { axis: 2 }), cache]);
  return { out, kAll: merge(presentK, io.k!), vAll: merge(presentV, io.v!) };
}

/** Causal attention after the cache without the fused kernel: concatenation, then a position mask. */
export function decomposedCausalAttention(c: Ctx, io: LayerCacheIo, q: string, k: string, v: string) {
  const { g, cfg } = c;
  const kNew = toHeads(c, k, cfg.numKvHeads);
  const vNew = toHeads(c, v, cfg.numKvHeads);
  const kAll = io.mode === 'append' ? g.o('Concat', [io.k!, kNew], { axis: 2 }) : kNew;
  const vAll = io.mode === 'append' ? g.o('Concat', [io.v!, vNew], { axis: 2 }) : vNew;
  return { out: maskedAttention(c, q, kAll, vAll, io.mask!), kAll, vAll };
}

/**
 * Additive mask [T, keys] in the given precision: query i may see key j when k_pos[j] <= q_pos[i]. The
 * masked value is finite (fp16 has no room for -1e9) so no softmax ever sees -inf - -inf.
 */
export function positionMask(
  g: GraphBuilder,
  qPos: string,
  kPos: string,
  type: 'float' | 'float16' = 'float',
): string {
  const later = g.o('Greater', [
    g.o('Unsqueeze', [kPos, g.int64s([0])]),
    g.o('Unsqueeze', [qPos, g.int64s([1])]),
  ]);
  const masked = type === 'float16' ? -3e4 : -1e9;
  return g.o('Where', [later, g.scalar(masked, 'masked', type), g.scalar(0, 'visible', type)]);
}

/** What every layer's attention needs besides its cache: sequence lengths, a mask or a bias. */
export function attentionInputs(c: Ctx, o: StackGraphOptions): Omit<LayerCacheIo, 'mode'> {
  const { g } = c;
  const io: Omit<LayerCacheIo, 'mode'> = {};
  if (o.to <= o.from) return io;
  const zero = g.int32s([0]);
  const lengths = () => {
    io.seqlens = c.lengths().seqlens;
    io.total = c.lengths().total;
  };
  if (o.cache === 'scatter') {
    io.rowNew = g.o('Reshape', [g.o('Greater', [c.ints.row_new, zero]), g.int64s([1, 1, -1, 1])]);
    io.rowSrc = c.ints.row_src;
    io.selective = o.selective ?? 'gqa';
  }
  if (io.selective === 'gqa') {
    // Keys: the N cache rows, then the T new rows; key_pos and key_hidden describe all N + T.
    lengths();
    const later = g.o('Greater', [
      g.o('Unsqueeze', [c.ints.key_pos, g.int64s([0])]),
      g.o('Unsqueeze', [c.ints.q_pos, g.int64s([1])]),
    ]);
    const stale = g.o('Unsqueeze', [g.o('Greater', [c.ints.key_hidden, zero]), g.int64s([0])]);
    const masked = c.t === 'float16' ? -3e4 : -1e9;
    const bias = g.o('Where', [
      g.o('Or', [later, stale]),
      g.scalar(masked, 'masked', c.t),
      g.scalar(0, 'visible', c.t),
    ]);
    io.bias = g.o('Unsqueeze', [bias, g.int64s([0, 1])]);
  } else if (o.cache === 'scatter' || o.attention === 'decomposed') {
    const type = io.selective === 'mha' ? c.t : 'float';
    const mask = positionMask(g, c.ints.q_pos, c.ints.k_pos, type);
    if (io.selective === 'mha') io.bias = g.o('Unsqueeze', [mask, g.int64s([0, 1])]);
    else io.mask = mask;
  } else lengths();
  return io;
}

/** Inputs of every layer's cache. */
export function cacheInputs(c: Ctx, o: StackGraphOptions, l: number, shared: Omit<LayerCacheIo, 'mode'>) {
  const { g, cfg } = c;
  const io: LayerCacheIo = { mode: o.cache, ...shared };
  if (o.cache !== 'none') {
    const prefix = o.cache === 'append' ? 'past' : 'cache';
    const dims = [o.cache === 'append' ? 'B' : 1, cfg.numKvHeads, 'S', cfg.headDim];
    const rows = o.slicePast ? c.pastRows() : null;
    const take = (t: string) => (rows ? g.o('Slice', [t, g.int64s([0]), rows, g.int64s([2])]) : t);
    io.k = take(g.input(`${prefix}_k_${l}`, c.t, dims));
    io.v = take(g.input(`${prefix}_v_${l}`, c.t, dims));
  }
  return io;
}
