import { inverseFrequencies, ropeTables } from '../../kv/rope.js';
import type { LayerWeights, ModelConfig, ModelWeights } from '../types.js';
import type { WeightFormat } from '../weights/format.js';
import type { Weight } from '../weights/weight.js';
import { float32ArrayToFloat16 } from '../../util/half.js';
import { GraphBuilder, type DataType, type OnnxModel } from './builder.js';
import { fusedBias } from './graphs.js';
import { linear, type WeightData, type WeightSink } from './linear.js';

/**
 * Graphs for device-resident execution on a GPU provider. Where the CPU engine runs one graph per layer
 * and keeps the KV cache on the host, these graphs run a whole stack of layers in one call, take the
 * cache as device tensors and return the updated cache as device tensors, so only ids and positions go
 * up and only logits (or blend's per-token deviations) come back.
 *
 * They are built on onnxruntime's fused contrib kernels, which its WebGPU provider implements:
 * SimplifiedLayerNormalization (RMSNorm), RotaryEmbedding (from tables of every position, computed like
 * the host's), and GroupQueryAttention (flash attention where the adapter allows) for causal attention
 * after a cache. CacheBlend's selective layers, where chosen tokens anywhere in the prompt attend by
 * position over a mixed cache, use a decomposed attention with a position mask.
 *
 * Layouts carry a batch dimension B (1 except in batched precompute): ids [B, T]; hidden [B, T, D] in
 * fp32 (the residual stream stays fp32 in every precision; matrix products run in the compute precision);
 * caches [B, kvHeads, rows, headDim] (BNSH, GroupQueryAttention's layout) in the compute precision, where
 * row r holds the token at position r.
 */

export type DeviceDtype = 'float32' | 'float16';

export type SelectiveAttention = 'gqa' | 'mha' | 'decomposed';

/** How the new tokens' K/V meet the cache of a stack's layers. */
export type CacheMode =
  /** no past rows: a prefill from scratch (also batched). */
  | 'none'
  /** past rows `past_k_l` [B, S, ...] followed by the new rows; returns the concatenation. */
  | 'append'
  /** a full cache `cache_k_l` [1, N, ...] whose rows `scatter_rows` are overwritten by the new rows. */
  | 'scatter';

export interface StackGraphOptions {
  /** Layers [from, to). */
  from: number;
  to: number;
  dtype: DeviceDtype;
  /** Format of the linear layers' weights (default: the compute precision's own, fp32 or fp16). */
  weights?: WeightFormat;
  cache: CacheMode;
  /** 'ids': token ids [B, T], embedded in the graph; 'rows': rows `rows` of a hidden state `hidden_in`. */
  input: 'ids' | 'rows';
  /** Return `logits` [B, vocab] of each sequence's last row. */
  head: boolean;
  /** Return the stack's output hidden states as `hidden`. */
  emitHidden: boolean;
  /** append: the past is the first `past_rows` rows of each `past_k_l` / `past_v_l` (int64 [1]). */
  slicePast?: boolean;
  /**
   * Causal attention (none/append): onnxruntime's GroupQueryAttention ('fused', default) or a concatenation
   * and position mask ('decomposed').
   */
  attention?: 'fused' | 'decomposed';
  /**
   * Blend's selective attention (scatter): GroupQueryAttention after the cache with a bias that hides the
   * stale rows ('gqa', default), MultiHeadAttention over repeated K/V heads with a position bias ('mha'),
   * or decomposed.
   */
  selective?: SelectiveAttention;
  /**
   * Return `dev` [C]: squared L2 distance between layer `to`'s fresh K (V, or both) of the first C tokens
   * and their cached rows `ctx_rows` of `cached_k` / `cached_v` (CacheBlend's deviation).
   */
  deviation?: 'k' | 'v' | 'kv';
}

/**
 * A model weight a device graph takes as an input: uploaded to the GPU once (DeviceWeights) and fed to
 * every graph that names it, so the weights are on the card once however many graphs a runner builds
 * (as initializers each session would hold its own copy).
 */
export interface WeightInput {
  name: string;
  type: DataType;
  dims: number[];
  /** The values to upload; called once per runner. */
  make: () => WeightData;
  /** make() gives the transpose ([dims[1], dims[0]]): the GPU transposes it as it uploads it. */
  transpose?: boolean;
}

/** A built graph and which of its outputs stay on the device (the rest come back to the host). */
export interface DeviceGraph {
  model: OnnxModel;
  deviceOutputs: string[];
  weights: WeightInput[];
}

function finish(c: Ctx, hostOutputs: readonly string[]): DeviceGraph {
  const { g } = c;
  return {
    model: g.toModel(),
    deviceOutputs: g.outputNames().filter((n) => !hostOutputs.includes(n)),
    weights: [...c.weightInputs.values()],
  };
}

/**
 * The small integer inputs of a stack, in the order they are packed into its one int32 input `ints`
 * (sizes in `int_sizes`, int64 on the host). Every host tensor a GPU kernel reads costs onnxruntime's
 * WebGPU provider a staging buffer and a queue submission (about a millisecond measured on an H100), so
 * a run uploads one packed tensor instead of one per index list.
 */
export function intSegments(o: StackGraphOptions): string[] {
  const segs: string[] = [o.input === 'ids' ? 'ids' : 'rows'];
  const layers = o.to > o.from;
  const selective = o.selective ?? 'gqa';
  if (layers && o.cache === 'scatter') {
    segs.push('q_pos', 'row_src', 'row_new');
    segs.push(...(selective === 'gqa' ? ['key_pos', 'key_hidden'] : ['k_pos']));
  } else if (layers && o.attention === 'decomposed') segs.push('q_pos', 'k_pos');
  if (o.deviation) segs.push('ctx_rows');
  return segs;
}

/** The graph under construction plus the precision helpers every piece needs. */
class Ctx {
  readonly t: 'float' | 'float16';
  /** The RoPE tables, added on first use. */
  tables: { cos: string; sin: string } | null = null;
  /** The segments of the packed integer input, by name (see intSegments). */
  ints: Record<string, string> = {};
  private pastRowsInput: string | null = null;
  /** Values built once per graph and shared, by key. */
  readonly memo = new Map<string, unknown>();
  /** RoPE positions [B, T] (int64), declared on first use: fused causal attention derives its own. */
  positions: (() => string) | null = null;

  private lengthInputs: { seqlens: string; total: string } | null = null;

  /** GroupQueryAttention's `seqlens_k` int32 [B] and `total_len` int32 [] inputs, declared once. */
  lengths(): { seqlens: string; total: string } {
    this.lengthInputs ??= {
      seqlens: this.g.input('seqlens_k', 'int32', ['B']),
      total: this.g.input('total_len', 'int32', []),
    };
    return this.lengthInputs;
  }

  /** The `past_rows` input (int64 [1]), declared once. */
  pastRows(): string {
    this.pastRowsInput ??= this.g.input('past_rows', 'int64', [1]);
    return this.pastRowsInput;
  }
  readonly format: WeightFormat;
  /** The model weights the graph takes as inputs, by name. */
  readonly weightInputs = new Map<string, WeightInput>();

  constructor(
    readonly g: GraphBuilder,
    readonly cfg: ModelConfig,
    dtype: DeviceDtype,
    format?: WeightFormat,
  ) {
    this.t = dtype === 'float16' ? 'float16' : 'float';
    this.format = format ?? (dtype === 'float16' ? 'fp16' : 'fp32');
  }

  /** Model weights become graph inputs (see WeightInput). */
  readonly input: WeightSink = (name, type, dims, make, transpose) => {
    if (!this.weightInputs.has(name)) {
      this.g.input(name, type, dims);
      this.weightInputs.set(name, { name, type, dims, make, transpose });
    }
    return name;
  };

  /** x [..., in] times stacked [out_k, in] matrices' transpose, in the graph's weight format. */
  linear(x: string, name: string, parts: { w: Weight; out: number }[], inputs: number): string {
    const o = { format: this.format, xType: this.t, accuracyLevel: 0 };
    return linear(this.g, this.input, x, name, { parts, inputs }, o);
  }

  /** fp32 → compute precision (no-op in fp32). */
  low(x: string): string {
    return this.t === 'float' ? x : this.g.o('Cast', [x], { to: 10 });
  }

  /** compute precision → fp32. */
  high(x: string): string {
    return this.t === 'float' ? x : this.g.o('Cast', [x], { to: 1 });
  }

  /** A model weight (an input) in the compute precision; `data` is read only when it is uploaded. */
  weight(name: string, data: () => Float32Array, dims: number[]): string {
    const half = this.t === 'float16';
    return this.input(name, this.t, dims, () => (half ? float32ArrayToFloat16(data()) : data()));
  }

  /** A model weight kept in fp32 (the norms, which run on the fp32 residual stream). */
  weightF32(name: string, w: Weight): string {
    return this.input(name, 'float', [...w.shape], () => w.f32());
  }

  /** A constant of the graph (an initializer) in the compute precision. */
  constant(name: string, data: Float32Array, dims: number[]): string {
    if (this.g.hasWeight(name)) return name;
    return this.g.weight(name, data, dims, this.t);
  }
}

/** Positions the device RoPE tables cover: the model's limit, at most this many. */
export const MAX_DEVICE_POSITIONS = 32768;

export function devicePositions(cfg: ModelConfig): number {
  return Math.min(cfg.maxPositionEmbeddings, MAX_DEVICE_POSITIONS);
}

/**
 * onnxruntime's fused RoPE (com.microsoft RotaryEmbedding) of x [B, T, heads*hd] at `pos` [B, T], from
 * tables of every position computed like the host's (float64, then rounded).
 */
function rotary(c: Ctx, x: string, pos: string): string {
  const tables = ropeCaches(c);
  const interleaved = c.cfg.ropeLayout === 'interleaved' ? 1 : 0;
  return c.g.op('RotaryEmbedding', [x, pos, tables.cos, tables.sin], { interleaved }, 1, 'com.microsoft')[0];
}

/** The RoPE tables of every position the device covers ([P, headDim / 2], compute precision), added once. */
function ropeCaches(c: Ctx): { cos: string; sin: string } {
  const { cfg } = c;
  const P = devicePositions(cfg);
  if (!c.tables) {
    const { cos, sin } = ropeTables(
      inverseFrequencies(cfg),
      Int32Array.from({ length: P }, (_, i) => i),
    );
    c.tables = {
      cos: c.constant('rope_cos', cos, [P, cfg.headDim / 2]),
      sin: c.constant('rope_sin', sin, [P, cfg.headDim / 2]),
    };
  }
  return c.tables;
}

/** RMSNorm of fp32 x through onnxruntime's fused kernel, cast to the compute precision. */
function norm(c: Ctx, x: string, name: string, w: Weight): string {
  const { g, cfg } = c;
  const weight = c.weightF32(name, w);
  return c.low(g.o('SimplifiedLayerNormalization', [x, weight], { axis: -1, epsilon: cfg.rmsNormEps }));
}

/** RMSNorm of fp32 `x` added to fp32 `delta` (one fused kernel): the normed sum (compute precision) and the sum. */
function skipNorm(c: Ctx, x: string, delta: string, name: string, w: Weight) {
  const { g, cfg } = c;
  const weight = c.weightF32(name, w);
  const [normed, , , sum] = g.op(
    'SkipSimplifiedLayerNormalization',
    [x, delta, weight],
    { epsilon: cfg.rmsNormEps },
    4,
    'com.microsoft',
  );
  return { h: c.low(normed), sum };
}

/** One fused projection of a layer's normed input h [B, T, D] to q (optional), k and v, packed. */
function projectPacked(c: Ctx, w: LayerWeights, prefix: string, h: string, withQuery: boolean) {
  const { g, cfg } = c;
  const { hiddenSize: D, numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  const parts = [
    ...(withQuery ? [{ w: w.wq, b: w.bq, out: H * hd }] : []),
    { w: w.wk, b: w.bk, out: KV * hd },
    { w: w.wv, b: w.bv, out: KV * hd },
  ];
  const width = parts.reduce((n, p) => n + p.out, 0);
  const name = `${prefix}.w${withQuery ? 'qkv' : 'kv'}`;
  let proj = c.linear(h, name, parts, D);
  if (cfg.attentionBias) {
    const bias = () => fusedBias(parts, prefix);
    proj = g.o('Add', [proj, c.weight(`${prefix}.b${withQuery ? 'qkv' : 'kv'}`, bias, [width])]);
  }
  return { proj, sizes: parts.map((p) => p.out) };
}

/** A layer's attention inputs from its normed input h [B, T, D], RoPE applied at the stack's positions. */
function projectQkv(
  c: Ctx,
  w: LayerWeights,
  prefix: string,
  h: string,
  withQuery: boolean,
  pos: string = c.positions!(),
): { q: string | null; k: string; v: string } {
  const { proj, sizes } = projectPacked(c, w, prefix, h, withQuery);
  const outs = c.g.op('Split', [proj, c.g.int64s(sizes)], { axis: -1 }, sizes.length);
  const [k, v] = outs.slice(-2);
  return { q: withQuery ? rotary(c, outs[0], pos) : null, k: rotary(c, k, pos), v };
}

/** [B, T, n*hd] → [B, n, T, hd] (the device cache layout, BNSH). */
function toHeads(c: Ctx, x: string, n: number): string {
  const { g } = c;
  return g.o('Transpose', [g.o('Reshape', [x, g.int64s([0, 0, n, c.cfg.headDim])])], { perm: [0, 2, 1, 3] });
}

interface LayerCacheIo {
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
}

/**
 * Causal attention of T new tokens after S cached rows through onnxruntime's GroupQueryAttention (flash
 * attention where the adapter allows), from the packed projection: the kernel applies RoPE itself at the
 * positions its lengths imply (S + i), and returns the cache with the new rows appended. One kernel where
 * a split and two RotaryEmbeddings were (every kernel costs ~16 µs on WebGPU, see docs/gpu.md).
 */
function causalAttention(c: Ctx, io: LayerCacheIo, w: LayerWeights, prefix: string, h: string) {
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

/** Attention of q [B, T, H*hd] over kAll/vAll [B, KV, rows, hd] with an additive mask [T, rows]. */
function maskedAttention(c: Ctx, q: string, kAll: string, vAll: string, mask: string): string {
  const { g, cfg } = c;
  const { numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  const G = H / KV;
  const qs = g.o('Mul', [q, g.scalar(1 / Math.sqrt(hd), 'scale', c.t)]);
  const q5 = g.o('Reshape', [qs, g.int64s([0, 0, KV, G, hd])]);
  const qg = g.o('Reshape', [g.o('Transpose', [q5], { perm: [0, 2, 3, 1, 4] }), g.int64s([0, KV, -1, hd])]);
  const scores = g.o('MatMul', [qg, g.o('Transpose', [kAll], { perm: [0, 1, 3, 2] })]); // [B, KV, G*T, rows]
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
function scatterAttention(c: Ctx, io: LayerCacheIo, q: string, k: string, v: string) {
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
function decomposedCausalAttention(c: Ctx, io: LayerCacheIo, q: string, k: string, v: string) {
  const { g, cfg } = c;
  const kNew = toHeads(c, k, cfg.numKvHeads);
  const vNew = toHeads(c, v, cfg.numKvHeads);
  const kAll = io.mode === 'append' ? g.o('Concat', [io.k!, kNew], { axis: 2 }) : kNew;
  const vAll = io.mode === 'append' ? g.o('Concat', [io.v!, vNew], { axis: 2 }) : vNew;
  return { out: maskedAttention(c, q, kAll, vAll, io.mask!), kAll, vAll };
}

/** The next layer's attention norm, fused into this layer's last residual addition. */
interface NextNorm {
  name: string;
  w: Weight;
}

/**
 * One decoder layer on the residual stream x (fp32) whose attention norm h (compute precision) is already
 * computed. Each residual addition is fused with the norm after it (SkipSimplifiedLayerNormalization):
 * the MLP's norm, then the next layer's attention norm (`next`), so the result carries that layer's h.
 */
function decoderLayer(
  c: Ctx,
  w: LayerWeights,
  l: number,
  x: string,
  h: string,
  io: LayerCacheIo,
  next: NextNorm | null,
): { out: string; h: string | null; k: string; v: string } {
  const { g, cfg } = c;
  const { hiddenSize: D, numHeads: H, headDim: hd, intermediateSize: I } = cfg;
  const p = `l${l}`;
  const attn = layerAttention(c, w, p, h, io);
  const wo = c.linear(attn.out, `${p}.wo_t`, [{ w: w.wo, out: D }], H * hd);
  const mlpIn = skipNorm(c, x, c.high(wo), `${p}.mlp_norm`, w.mlpNorm);
  const gateUp = [
    { w: w.wGate, out: I },
    { w: w.wUp, out: I },
  ];
  const gu = c.linear(mlpIn.h, `${p}.wgu`, gateUp, D);
  const [gate, up] = g.op('Split', [gu, g.int64s([I, I])], { axis: -1 }, 2);
  const act = g.o('Mul', [g.o('Mul', [gate, g.o('Sigmoid', [gate])]), up]);
  const down = c.high(c.linear(act, `${p}.wdown_t`, [{ w: w.wDown, out: D }], I));
  if (!next) return { out: g.o('Add', [mlpIn.sum, down]), h: null, k: attn.kAll, v: attn.vAll };
  const after = skipNorm(c, mlpIn.sum, down, next.name, next.w);
  return { out: after.sum, h: after.h, k: attn.kAll, v: attn.vAll };
}

/** A layer's attention over its cache (see CacheMode), from its normed input h. */
function layerAttention(c: Ctx, w: LayerWeights, prefix: string, h: string, io: LayerCacheIo) {
  if (io.mode !== 'scatter' && !io.mask) return causalAttention(c, io, w, prefix, h);
  const { q, k, v } = projectQkv(c, w, prefix, h, true);
  return io.mode === 'scatter'
    ? scatterAttention(c, io, q!, k, v)
    : decomposedCausalAttention(c, io, q!, k, v);
}

/**
 * The last layer of a stack whose only outputs are caches (batched precompute): its K and V, nothing
 * after them (no attention, no MLP), in the cache layout [B, KV, T, hd].
 */
function kvOnlyLayer(c: Ctx, w: LayerWeights, l: number, h: string): { k: string; v: string } {
  const { k, v } = projectQkv(c, w, `l${l}`, h, false);
  return { k: toHeads(c, k, c.cfg.numKvHeads), v: toHeads(c, v, c.cfg.numKvHeads) };
}

/**
 * Additive mask [T, keys] in the given precision: query i may see key j when k_pos[j] <= q_pos[i]. The
 * masked value is finite (fp16 has no room for -1e9) so no softmax ever sees -inf - -inf.
 */
function positionMask(
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

/** The stack's input hidden states [B, T, D] fp32. */
function stackInput(c: Ctx, weights: ModelWeights, input: StackGraphOptions['input']): string {
  const { g, cfg } = c;
  const D = cfg.hiddenSize;
  if (input === 'ids') {
    // ids [B*T] → [B, T]; B is the length of seqlens_k (one per sequence).
    const B = g.o('Shape', [c.lengths().seqlens]);
    const ids = g.o('Reshape', [c.ints.ids, g.o('Concat', [B, g.int64s([-1])], { axis: 0 })]);
    const table = c.weight('embed', () => weights.embedTokens.f32(), [cfg.vocabSize, D]);
    return c.high(g.o('Gather', [table, ids], { axis: 0 }));
  }
  const hidden = g.input('hidden_in', 'float', [1, 'T0', D]);
  return g.o('Gather', [hidden, c.ints.rows], { axis: 1 });
}

function logitsOfLastRow(c: Ctx, weights: ModelWeights, x: string): string {
  const { g, cfg } = c;
  const { hiddenSize: D, vocabSize: V } = cfg;
  const last = g.o('Slice', [x, g.int64s([-1]), g.int64s([2 ** 53]), g.int64s([1])]);
  const h = norm(c, last, 'final_norm', weights.finalNorm);
  const logits = c.linear(h, 'lm_head_t', [{ w: weights.lmHead, out: V }], D);
  return g.o('Reshape', [c.high(logits), g.int64s([0, V])]);
}

/**
 * CacheBlend's deviation at layer `layer` (x is its input) of the first C tokens, whose cache rows are
 * `ctx_rows` int64 [C]: squared L2 distance of their fresh K (V, or both) from rows ctx_rows of the
 * cached `cached_k` / `cached_v`.
 */
function deviation(c: Ctx, w: LayerWeights, layer: number, x: string, metric: 'k' | 'v' | 'kv'): string {
  const { g, cfg } = c;
  const { numKvHeads: KV, headDim: hd } = cfg;
  const rows = c.ints.ctx_rows;
  const count = g.o('Shape', [rows]);
  const first = (t: string) => g.o('Slice', [t, g.int64s([0]), count, g.int64s([1])]);
  const h = norm(c, first(x), `l${layer}.attn_norm`, w.attnNorm);
  const fresh = projectQkv(c, w, `l${layer}`, h, false, first(c.positions!()));
  const cachedRows = (name: string) =>
    g.o('Gather', [g.input(name, c.t, [1, KV, 'N', hd]), rows], { axis: 2 });
  const sq = (a: string, b: string) => {
    const d = g.o('Sub', [c.high(toHeads(c, a, KV)), c.high(b)]);
    return g.o('ReduceSum', [g.o('Mul', [d, d]), g.int64s([0, 1, 3])], { keepdims: 0 });
  };
  const parts: string[] = [];
  if (metric !== 'v') parts.push(sq(fresh.k, cachedRows('cached_k')));
  if (metric !== 'k') parts.push(sq(fresh.v, cachedRows('cached_v')));
  return parts.length === 1 ? parts[0] : g.o('Add', parts);
}

/** What every layer's attention needs besides its cache: sequence lengths, a mask or a bias. */
function attentionInputs(c: Ctx, o: StackGraphOptions): Omit<LayerCacheIo, 'mode'> {
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
function cacheInputs(c: Ctx, o: StackGraphOptions, l: number, shared: Omit<LayerCacheIo, 'mode'>) {
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

/**
 * Layers [from, to) on the residual stream x: the first layer's attention norm, then each layer with its
 * residual additions fused into the norms after them. `cache` gives each layer's cache inputs; `emit`
 * takes each layer's cache after the run. With kvOnly the last layer stops at its K/V. Returns the
 * stack's output hidden states (its input when kvOnly cuts the last layer short).
 */
function layerStack(
  c: Ctx,
  weights: ModelWeights,
  o: { from: number; to: number; kvOnly: boolean },
  x: string,
  cache: (l: number) => LayerCacheIo,
  emit: (l: number, r: { k: string; v: string }) => void,
): string {
  const L = weights.layers;
  let h = o.to > o.from ? norm(c, x, `l${o.from}.attn_norm`, L[o.from].attnNorm) : null;
  for (let l = o.from; l < o.to; l++) {
    if (o.kvOnly && l === o.to - 1) {
      emit(l, kvOnlyLayer(c, L[l], l, h!));
      break;
    }
    const next = l + 1 < o.to ? { name: `l${l + 1}.attn_norm`, w: L[l + 1].attnNorm } : null;
    const layer = decoderLayer(c, L[l], l, x, h!, cache(l), next);
    emit(l, layer);
    x = layer.out;
    h = layer.h;
  }
  return x;
}

/**
 * The packed integer input of a decode burst: the first token (the one host tensor its kernels read),
 * and for decomposed attention every step's position and the keys' positions after the last step.
 */
export function burstSegments(attention: 'fused' | 'decomposed'): string[] {
  return attention === 'decomposed' ? ['ids', 'q_pos', 'k_pos'] : ['ids'];
}

/**
 * Greedy decoding of `steps` tokens in one run: from the token in `ids` (int32 [1], packed), each step
 * runs every layer over one new token after the cache (`past_k_l` / `past_v_l`, then the previous step's),
 * picks the argmax of its logits on the device and feeds it to the next step. Only the tokens (`tokens`,
 * float [steps], exact) come back; the cache after the last step stays on the device (`k_l` / `v_l`), holding
 * the first token and every generated token but the last. Per step i, host tensors that the kernels read
 * on the host (no upload): seqlens_i int32 [1] and total_len_i int32 [] (GroupQueryAttention's lengths),
 * pos_i int64 [1, 1] (RotaryEmbedding's position, where the attention does not apply RoPE itself).
 * Everything else stays on the device: a value that went back to the host mid-run would stall the GPU.
 */
export function buildDecodeBurstGraph(
  cfg: ModelConfig,
  weights: ModelWeights,
  o: { dtype: DeviceDtype; steps: number; attention: 'fused' | 'decomposed'; weights?: WeightFormat },
): DeviceGraph {
  const { numKvHeads: KV, headDim: hd, numLayers: L, hiddenSize: D } = cfg;
  const g = new GraphBuilder(`burst_${o.steps}`);
  const c = new Ctx(g, cfg, o.dtype, o.weights);
  const segs = burstSegments(o.attention);
  const parts = g.op(
    'Split',
    [g.input('ints', 'int32', ['M']), g.input('int_sizes', 'int64', [segs.length])],
    { axis: 0 },
    segs.length,
  );
  c.ints = Object.fromEntries(segs.map((name, i) => [name, parts[i]]));
  const table = c.weight('embed', () => weights.embedTokens.f32(), [cfg.vocabSize, D]);
  let token = c.ints.ids;
  let kv: { k: string[]; v: string[] } = {
    k: Array.from({ length: L }, (_, l) => g.input(`past_k_${l}`, c.t, [1, KV, 'S', hd])),
    v: Array.from({ length: L }, (_, l) => g.input(`past_v_${l}`, c.t, [1, KV, 'S', hd])),
  };
  const tokens: string[] = [];
  for (let i = 0; i < o.steps; i++) {
    let pos: string | null = null;
    c.positions = () => (pos ??= g.input(`pos_${i}`, 'int64', [1, 1]));
    const x = c.high(g.o('Reshape', [g.o('Gather', [table, token], { axis: 0 }), g.int64s([1, 1, D])]));
    const next: typeof kv = { k: [], v: [] };
    const out = layerStack(
      c,
      weights,
      { from: 0, to: L, kvOnly: false },
      x,
      (l) => ({ mode: 'append', k: kv.k[l], v: kv.v[l], ...burstAttention(c, o, i) }),
      (l, r) => {
        next.k.push(r.k);
        next.v.push(r.v);
        // Every step's cache is an output: onnxruntime infers one symbolic length for all of them (the
        // past's) and would otherwise reuse a shorter step's buffer for a longer one.
        if (i < o.steps - 1) {
          g.output(`k_${l}_step${i}`, r.k, c.t, [1, KV, `R${i}`, hd]);
          g.output(`v_${l}_step${i}`, r.v, c.t, [1, KV, `R${i}`, hd]);
        }
      },
    );
    kv = next;
    token = g.o('ArgMax', [logitsOfLastRow(c, weights, out)], { axis: -1, keepdims: 0 });
    // The list goes back as floats (exact below 2^24): onnxruntime's WebGPU provider concatenates and
    // casts no int64, and a kernel on the host would bring each token back mid-run. A gather from a
    // table of the ids does it in one kernel.
    tokens.push(g.o('Gather', [idTable(c), token], { axis: 0 }));
  }
  kv.k.forEach((t, l) => g.output(`k_${l}`, t, c.t, [1, KV, 'R', hd]));
  kv.v.forEach((t, l) => g.output(`v_${l}`, t, c.t, [1, KV, 'R', hd]));
  const all = tokens.length === 1 ? tokens[0] : g.o('Concat', tokens, { axis: 0 });
  g.output('tokens', all, 'float', [o.steps]);
  return finish(c, ['tokens']);
}

/** Every token id as a float ([vocab]), added once. */
function idTable(c: Ctx): string {
  const V = c.cfg.vocabSize;
  if (!c.memo.has('ids')) {
    c.memo.set(
      'ids',
      c.g.weight(
        'token_ids',
        Float32Array.from({ length: V }, (_, i) => i),
        [V],
      ),
    );
  }
  return c.memo.get('ids') as string;
}

/** Step i's attention inputs in a decode burst (see buildDecodeBurstGraph), declared once per step. */
function burstAttention(
  c: Ctx,
  o: { steps: number; attention: 'fused' | 'decomposed' },
  i: number,
): Omit<LayerCacheIo, 'mode' | 'k' | 'v'> {
  const { g } = c;
  const key = `burst_${i}`;
  const known = c.memo.get(key) as Omit<LayerCacheIo, 'mode' | 'k' | 'v'> | undefined;
  if (known) return known;
  let io: Omit<LayerCacheIo, 'mode' | 'k' | 'v'>;
  if (o.attention === 'fused') {
    io = { seqlens: g.input(`seqlens_${i}`, 'int32', [1]), total: g.input(`total_len_${i}`, 'int32', []) };
  } else {
    const qPos = g.o('Slice', [c.ints.q_pos, g.int64s([i]), g.int64s([i + 1])]);
    const drop = o.steps - 1 - i; // the later steps' keys
    const keys = drop === 0 ? c.ints.k_pos : g.o('Slice', [c.ints.k_pos, g.int64s([0]), g.int64s([-drop])]);
    io = { mask: positionMask(g, qPos, keys) };
  }
  c.memo.set(key, io);
  return io;
}

/**
 * A stack of decoder layers (see StackGraphOptions). Inputs: ids [B, T] or hidden_in + rows; pos_ids
 * int64 [1, T] (RoPE positions); none/append: seqlens_k int32 [B] and total_len int32 [] (cache rows after
 * the run, minus one, and the total); scatter: q_pos/k_pos int32 for the mask, row_new/row_src. Outputs:
 * logits, hidden, dev, and k_l/v_l [B, KV, rows, hd], the layer's cache after the run.
 */
export function buildStackGraph(cfg: ModelConfig, weights: ModelWeights, o: StackGraphOptions): DeviceGraph {
  const { numKvHeads: KV, headDim: hd, hiddenSize: D, vocabSize: V } = cfg;
  const g = new GraphBuilder(`stack_${o.from}_${o.to}`);
  const c = new Ctx(g, cfg, o.dtype, o.weights);
  const segs = intSegments(o);
  const parts = g.op(
    'Split',
    [g.input('ints', 'int32', ['M']), g.input('int_sizes', 'int64', [segs.length])],
    { axis: 0 },
    segs.length,
  );
  c.ints = Object.fromEntries(segs.map((name, i) => [name, parts[i]]));
  let x = stackInput(c, weights, o.input);
  // RotaryEmbedding wants one row of positions per sequence; declared only where a kernel reads them.
  let pos: string | null = null;
  c.positions = () => {
    if (!pos) {
      const batch = g.o('Slice', [g.o('Shape', [x]), g.int64s([0]), g.int64s([1])]);
      pos = g.o('Expand', [
        g.input('pos_ids', 'int64', [1, 'T']),
        g.o('Concat', [batch, g.int64s([1])], { axis: 0 }),
      ]);
    }
    return pos;
  };
  const shared = attentionInputs(c, o);
  const kvOnly = o.cache === 'none' && !o.head && !o.emitHidden && !o.deviation;
  x = layerStack(
    c,
    weights,
    { from: o.from, to: o.to, kvOnly },
    x,
    (l) => cacheInputs(c, o, l, shared),
    (l, r) => {
      g.output(`k_${l}`, r.k, c.t, ['B', KV, 'R', hd]);
      g.output(`v_${l}`, r.v, c.t, ['B', KV, 'R', hd]);
    },
  );
  if (o.deviation) {
    const dev = deviation(c, weights.layers[o.to], o.to, x, o.deviation);
    g.output('dev', dev, 'float', ['C']);
  }
  if (o.emitHidden) g.output('hidden', x, 'float', ['B', 'T', D]);
  if (o.head) g.output('logits', logitsOfLastRow(c, weights, x), 'float', ['B', V]);
  return finish(c, ['logits', 'dev']);
}

/**
 * Assemble a request's cache from chunk caches already on the device: for layers [from, L), BOS's row,
 * then each chunk's rows with keys rotated from positions 1…n to the chunk's offset (`shift_pos`: each
 * row's offset − 1), then (withQuestion) `q_len` zero rows the blend overwrites.
 * Inputs: bos_k/bos_v [L, KV, 1, hd], c{i}_k/c{i}_v [L, KV, n_i, hd]; outputs k_l/v_l [1, KV, N, hd].
 */
export function buildAssembleGraph(
  cfg: ModelConfig,
  dtype: DeviceDtype,
  chunks: number,
  from: number,
  withQuestion: boolean,
): DeviceGraph {
  const { numLayers: L, numKvHeads: KV, headDim: hd } = cfg;
  const g = new GraphBuilder(`assemble_${chunks}`);
  const c = new Ctx(g, cfg, dtype);
  const layers = (t: string) =>
    from === 0 ? t : g.o('Slice', [t, g.int64s([from]), g.int64s([L]), g.int64s([0])]);
  // Chunks' keys concatenated, then rotated in one kernel: shift_pos [L - from, rows] holds each row's
  // shift (its chunk's offset - 1), and RoPE rotations compose, so p becomes p + shift.
  const keys = Array.from({ length: chunks }, (_, i) =>
    layers(g.input(`c${i}_k`, c.t, [L, KV, `n${i}`, hd])),
  );
  const shift = g.input('shift_pos', 'int64', [L - from, 'rows']);
  const rotated = rotary(c, chunks === 1 ? keys[0] : g.o('Concat', keys, { axis: 2 }), shift);
  const ks = [layers(g.input('bos_k', c.t, [L, KV, 1, hd])), rotated];
  const vs = [layers(g.input('bos_v', c.t, [L, KV, 1, hd]))];
  for (let i = 0; i < chunks; i++) vs.push(layers(g.input(`c${i}_v`, c.t, [L, KV, `n${i}`, hd])));
  if (withQuestion) {
    const qLen = g.input('q_len', 'int64', [1]);
    const shape = g.o('Concat', [g.int64s([L - from, KV]), qLen, g.int64s([hd])], { axis: 0 });
    const zeros = g.o('Expand', [g.scalar(0, 'zero', c.t), shape]);
    ks.push(zeros);
    vs.push(zeros);
  }
  const n = L - from;
  const split = (all: string[], name: string) => {
    const whole = g.o('Concat', all, { axis: 2 });
    const outs = n === 1 ? [whole] : splitMany(g, whole, Array<number>(n).fill(1), 0);
    outs.forEach((t, i) => g.output(`${name}_${from + i}`, t, c.t, [1, KV, 'N', hd]));
  };
  split(ks, 'k');
  split(vs, 'v');
  return finish(c, []);
}

/** Outputs a WebGPU shader may write besides its one input: 16 storage buffers a shader stage. */
const MAX_SPLIT_OUTPUTS = 15;

/**
 * Split x along `axis` into pieces of `sizes`, in rounds of at most MAX_SPLIT_OUTPUTS outputs (a 16-layer
 * model's per-layer split is over the limit: "Too many storage buffers in shader", seen on an H200).
 */
function splitMany(g: GraphBuilder, x: string, sizes: number[], axis: number): string[] {
  if (sizes.length <= MAX_SPLIT_OUTPUTS) return g.op('Split', [x, g.int64s(sizes)], { axis }, sizes.length);
  const per = Math.ceil(sizes.length / MAX_SPLIT_OUTPUTS);
  const groups = Array.from({ length: Math.ceil(sizes.length / per) }, (_, i) =>
    sizes.slice(i * per, (i + 1) * per),
  );
  const parts = splitMany(
    g,
    x,
    groups.map((s) => s.reduce((a, b) => a + b, 0)),
    axis,
  );
  return parts.flatMap((p, i) => (groups[i].length === 1 ? [p] : splitMany(g, p, groups[i], axis)));
}

/** Host fp32 token-major [L, n, KV, hd] K and V → device [L, KV, n, hd] in the compute precision. */
export function buildUploadGraph(cfg: ModelConfig, dtype: DeviceDtype): DeviceGraph {
  const { numKvHeads: KV, headDim: hd } = cfg;
  const g = new GraphBuilder('upload');
  const c = new Ctx(g, cfg, dtype);
  for (const name of ['k', 'v']) {
    const x = g.o('Transpose', [g.input(name, 'float', ['L', 'n', KV, hd])], { perm: [0, 2, 1, 3] });
    g.output(`${name}_dev`, c.low(x), c.t, ['L', KV, 'n', hd]);
  }
  return finish(c, []);
}

/**
 * One value of a device tensor [B, KV, rows, hd] back on the host: reading it waits for every kernel
 * queued before (a precompute batch's timing, without bringing its caches back).
 */
export function buildSyncGraph(cfg: ModelConfig, dtype: DeviceDtype): DeviceGraph {
  const g = new GraphBuilder('sync');
  const c = new Ctx(g, cfg, dtype);
  const x = g.input('t', c.t, ['B', 'H', 'R', 'D']);
  const one = g.o('Slice', [x, g.int64s([0, 0, 0, 0]), g.int64s([1, 1, 1, 1])]);
  g.output('first', c.high(one), 'float', [1, 1, 1, 1]);
  return finish(c, ['first']);
}

/**
 * Device tensors t0…t{count-1} [B, KV, rows, hd] → host tensors o0… token-major [B, rows, KV, hd], fp32
 * or (`keepPrecision`) in the compute precision: the one way caches come back from the device.
 */
export function buildDownloadGraph(
  cfg: ModelConfig,
  dtype: DeviceDtype,
  count: number,
  keepPrecision = false,
): DeviceGraph {
  const g = new GraphBuilder('download');
  const c = new Ctx(g, cfg, dtype);
  for (let i = 0; i < count; i++) {
    const t = g.input(`t${i}`, c.t, ['B', 'H', 'R', 'D']);
    const x = g.o('Transpose', [keepPrecision ? t : c.high(t)], { perm: [0, 2, 1, 3] });
    g.output(`o${i}`, x, keepPrecision ? c.t : 'float', ['B', 'R', 'H', 'D']);
  }
  return finish(c, g.outputNames());
}
