import type { LayerWeights, ModelConfig, ModelWeights } from '../types.js';
import { GraphBuilder } from './builder.js';
import { fusedTransposed, rmsNorm, transposed } from './graphs.js';

/**
 * Graphs for device-resident execution on a GPU provider. Where the CPU engine runs one graph per layer
 * and keeps the KV cache on the host, these graphs run a whole stack of layers in one call, take the
 * cache as device tensors and return the updated cache as device tensors, so only ids, positions and
 * RoPE tables go up and only logits (or blend's per-token deviations) come back.
 *
 * Layouts carry a batch dimension B (1 except in batched precompute): ids [B, T]; hidden [B, T, D] in
 * fp32 (the residual stream stays fp32 in every precision); K/V [B, rows, kvHeads, headDim] in the
 * compute precision. Row r of a cache holds the token at position r, so masks are built in the graph
 * from the query positions `q_pos` [T] and the key positions `k_pos` [rows] (int32).
 */

export type DeviceDtype = 'float32' | 'float16';

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
  cache: CacheMode;
  /** 'ids': token ids [B, T], embedded in the graph; 'rows': rows `rows` of a hidden state `hidden_in`. */
  input: 'ids' | 'rows';
  /** Return `logits` [B, vocab] of each sequence's last row. */
  head: boolean;
  /** Return the stack's output hidden states as `hidden`. */
  emitHidden: boolean;
  /**
   * Return `dev` [C]: squared L2 distance between layer `to`'s fresh K (V, or both) of the first C = ctx_len
   * tokens and rows 1…C of `cached_k` / `cached_v` (CacheBlend's deviation at its check layer).
   */
  deviation?: 'k' | 'v' | 'kv';
}

/** A built graph and which of its outputs stay on the device (the rest come back to the host). */
export interface DeviceGraph {
  bytes: Uint8Array;
  deviceOutputs: string[];
}

function finish(g: GraphBuilder, hostOutputs: readonly string[]): DeviceGraph {
  return { bytes: g.toBytes(), deviceOutputs: g.outputNames().filter((n) => !hostOutputs.includes(n)) };
}

/** The graph under construction plus the precision helpers every piece needs. */
class Ctx {
  readonly t: 'float' | 'float16';
  constructor(
    readonly g: GraphBuilder,
    readonly cfg: ModelConfig,
    dtype: DeviceDtype,
  ) {
    this.t = dtype === 'float16' ? 'float16' : 'float';
  }

  /** fp32 → compute precision (no-op in fp32). */
  low(x: string): string {
    return this.t === 'float' ? x : this.g.o('Cast', [x], { to: 10 });
  }

  /** compute precision → fp32. */
  high(x: string): string {
    return this.t === 'float' ? x : this.g.o('Cast', [x], { to: 1 });
  }

  weight(name: string, data: Float32Array, dims: number[]): string {
    return this.g.weight(name, data, dims, this.t);
  }
}

/** Rotate the last axis of x by cos/sin (broadcastable to x's shape with the last axis halved). */
function ropeLast(c: Ctx, x: string, cos: string, sin: string): string {
  const { g } = c;
  const hd = c.cfg.headDim;
  const half = hd / 2;
  const axis = g.int64s([-1]);
  if (c.cfg.ropeLayout === 'half') {
    const x1 = g.o('Slice', [x, g.int64s([0]), g.int64s([half]), axis]);
    const x2 = g.o('Slice', [x, g.int64s([half]), g.int64s([hd]), axis]);
    const r1 = g.o('Sub', [g.o('Mul', [x1, cos]), g.o('Mul', [x2, sin])]);
    const r2 = g.o('Add', [g.o('Mul', [x2, cos]), g.o('Mul', [x1, sin])]);
    return g.o('Concat', [r1, r2], { axis: -1 });
  }
  const step = g.int64s([2]);
  const xe = g.o('Slice', [x, g.int64s([0]), g.int64s([hd]), axis, step]);
  const xo = g.o('Slice', [x, g.int64s([1]), g.int64s([hd]), axis, step]);
  const re = g.o('Sub', [g.o('Mul', [xe, cos]), g.o('Mul', [xo, sin])]);
  const ro = g.o('Add', [g.o('Mul', [xe, sin]), g.o('Mul', [xo, cos])]);
  const pairs = g.o('Concat', [g.o('Unsqueeze', [re, axis]), g.o('Unsqueeze', [ro, axis])], { axis: -1 });
  return g.o('Reshape', [pairs, g.o('Shape', [x])]);
}

/** Norm, one fused projection and RoPE of a layer's attention inputs; x [B, T, D] fp32. */
function projectQkv(
  c: Ctx,
  w: LayerWeights,
  prefix: string,
  x: string,
  rope: { cos: string; sin: string },
  withQuery: boolean,
): { q4: string | null; k4: string; v4: string } {
  const { g, cfg } = c;
  const { hiddenSize: D, numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  const h = c.low(rmsNorm(g, x, g.weight(`${prefix}.attn_norm`, w.attnNorm, [D]), cfg.rmsNormEps));
  const parts = [
    ...(withQuery ? [{ w: w.wq, b: w.bq, out: H * hd }] : []),
    { w: w.wk, b: w.bk, out: KV * hd },
    { w: w.wv, b: w.bv, out: KV * hd },
  ];
  const width = parts.reduce((n, p) => n + p.out, 0);
  const name = `${prefix}.w${withQuery ? 'qkv' : 'kv'}`;
  let proj = g.o('MatMul', [h, c.weight(name, fusedTransposed(parts, D), [D, width])]);
  if (cfg.attentionBias) {
    const bias = new Float32Array(width);
    let off = 0;
    for (const p of parts) {
      if (!p.b) throw new Error(`${prefix}: attention biases missing`);
      bias.set(p.b, off);
      off += p.out;
    }
    proj = g.o('Add', [proj, c.weight(`${prefix}.b${withQuery ? 'qkv' : 'kv'}`, bias, [width])]);
  }
  const outs = g.op('Split', [proj, g.int64s(parts.map((p) => p.out))], { axis: -1 }, parts.length);
  const [k, v] = outs.slice(-2);
  const heads = (t: string, n: number) => g.o('Reshape', [t, g.int64s([0, 0, n, hd])]);
  return {
    q4: withQuery ? ropeLast(c, heads(outs[0], H), rope.cos, rope.sin) : null,
    k4: ropeLast(c, heads(k, KV), rope.cos, rope.sin),
    v4: heads(v, KV),
  };
}

/** Grouped-query attention of q4 [B, T, H, hd] over kAll/vAll [B, S+T, KV, hd] with mask [T, S+T]. */
function attend(c: Ctx, q4: string, kAll: string, vAll: string, mask: string): string {
  const { g, cfg } = c;
  const { numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  const G = H / KV;
  const qs = g.o('Mul', [q4, g.scalar(1 / Math.sqrt(hd), 'scale', c.t)]);
  const q5 = g.o('Reshape', [qs, g.int64s([0, 0, KV, G, hd])]);
  const qg = g.o('Reshape', [g.o('Transpose', [q5], { perm: [0, 2, 3, 1, 4] }), g.int64s([0, KV, -1, hd])]);
  const kT = g.o('Transpose', [kAll], { perm: [0, 2, 3, 1] }); // [B, KV, hd, S+T]
  const vH = g.o('Transpose', [vAll], { perm: [0, 2, 1, 3] }); // [B, KV, S+T, hd]
  const scores = g.o('MatMul', [qg, kT]); // [B, KV, G*T, S+T]
  const shape5 = g.o('Concat', [g.int64s([0, KV, G]), g.o('Shape', [mask])], { axis: 0 });
  const masked = g.o('Add', [c.high(g.o('Reshape', [scores, shape5])), mask]);
  const probs = c.low(g.o('Reshape', [g.o('Softmax', [masked], { axis: -1 }), g.o('Shape', [scores])]));
  const ctx = g.o('MatMul', [probs, vH]); // [B, KV, G*T, hd]
  const ctx5 = g.o('Reshape', [ctx, g.int64s([0, KV, G, -1, hd])]);
  return g.o('Reshape', [g.o('Transpose', [ctx5], { perm: [0, 3, 1, 2, 4] }), g.int64s([0, 0, -1])]);
}

interface LayerCacheIo {
  mode: CacheMode;
  /** past_k/v (append) or cache_k/v (scatter) input names. */
  k?: string;
  v?: string;
  /** scatter: int64 [T, 1] rows the new tokens overwrite. */
  rows?: string;
}

/** New rows meet the cache: returns the K/V attended over, which is also the layer's cache output. */
function mergeCache(c: Ctx, io: LayerCacheIo, k4: string, v4: string): { kAll: string; vAll: string } {
  const { g, cfg } = c;
  if (io.mode === 'none') return { kAll: k4, vAll: v4 };
  if (io.mode === 'append') {
    return {
      kAll: g.o('Concat', [io.k!, k4], { axis: 1 }),
      vAll: g.o('Concat', [io.v!, v4], { axis: 1 }),
    };
  }
  const rowShape = g.int64s([-1, cfg.numKvHeads, cfg.headDim]);
  const batchShape = g.int64s([1, -1, cfg.numKvHeads, cfg.headDim]);
  const scatter = (cache: string, fresh: string) =>
    g.o('Reshape', [
      g.o('ScatterND', [g.o('Reshape', [cache, rowShape]), io.rows!, g.o('Reshape', [fresh, rowShape])]),
      batchShape,
    ]);
  return { kAll: scatter(io.k!, k4), vAll: scatter(io.v!, v4) };
}

function decoderLayer(
  c: Ctx,
  w: LayerWeights,
  l: number,
  x: string,
  rope: { cos: string; sin: string },
  mask: string,
  io: LayerCacheIo,
): { out: string; k: string; v: string } {
  const { g, cfg } = c;
  const { hiddenSize: D, numHeads: H, headDim: hd, intermediateSize: I } = cfg;
  const p = `l${l}`;
  const { q4, k4, v4 } = projectQkv(c, w, p, x, rope, true);
  const { kAll, vAll } = mergeCache(c, io, k4, v4);
  const attn = attend(c, q4!, kAll, vAll, mask);
  const wo = c.weight(`${p}.wo_t`, transposed(w.wo, D, H * hd), [H * hd, D]);
  const h1 = g.o('Add', [x, c.high(g.o('MatMul', [attn, wo]))]);
  const m = c.low(rmsNorm(g, h1, g.weight(`${p}.mlp_norm`, w.mlpNorm, [D]), cfg.rmsNormEps));
  const wgu = fusedTransposed(
    [
      { w: w.wGate, out: I },
      { w: w.wUp, out: I },
    ],
    D,
  );
  const gu = g.o('MatMul', [m, c.weight(`${p}.wgu`, wgu, [D, 2 * I])]);
  const [gate, up] = g.op('Split', [gu, g.int64s([I, I])], { axis: -1 }, 2);
  const act = g.o('Mul', [g.o('Mul', [gate, g.o('Sigmoid', [gate])]), up]);
  const wd = c.weight(`${p}.wdown_t`, transposed(w.wDown, D, I), [I, D]);
  const out = g.o('Add', [h1, c.high(g.o('MatMul', [act, wd]))]);
  return { out, k: kAll, v: vAll };
}

/** Additive mask [T, keys]: query i may see key j when k_pos[j] <= q_pos[i]. */
function positionMask(g: GraphBuilder, qPos: string, kPos: string): string {
  const later = g.o('Greater', [
    g.o('Unsqueeze', [kPos, g.int64s([0])]),
    g.o('Unsqueeze', [qPos, g.int64s([1])]),
  ]);
  return g.o('Where', [later, g.scalar(-1e9, 'masked'), g.scalar(0, 'visible')]);
}

/** The stack's input hidden states [B, T, D] fp32. */
function stackInput(c: Ctx, weights: ModelWeights, input: StackGraphOptions['input']): string {
  const { g, cfg } = c;
  const D = cfg.hiddenSize;
  if (input === 'ids') {
    const ids = g.input('ids', 'int32', ['B', 'T']);
    const table = c.weight('embed', weights.embedTokens, [cfg.vocabSize, D]);
    return c.high(g.o('Gather', [table, ids], { axis: 0 }));
  }
  const hidden = g.input('hidden_in', 'float', [1, 'T0', D]);
  const rows = g.input('rows', 'int64', ['T']);
  return g.o('Gather', [hidden, rows], { axis: 1 });
}

function logitsOfLastRow(c: Ctx, weights: ModelWeights, x: string): string {
  const { g, cfg } = c;
  const { hiddenSize: D, vocabSize: V } = cfg;
  const last = g.o('Slice', [x, g.int64s([-1]), g.int64s([2 ** 53]), g.int64s([1])]);
  const h = c.low(rmsNorm(g, last, g.weight('final_norm', weights.finalNorm, [D]), cfg.rmsNormEps));
  const logits = g.o('MatMul', [h, c.weight('lm_head_t', transposed(weights.lmHead, V, D), [D, V])]);
  return g.o('Reshape', [c.high(logits), g.int64s([0, V])]);
}

/** CacheBlend's deviation of the first ctx_len tokens at layer `layer`; x is that layer's input. */
function deviation(
  c: Ctx,
  w: LayerWeights,
  layer: number,
  x: string,
  rope: { cos: string; sin: string },
  metric: 'k' | 'v' | 'kv',
): string {
  const { g, cfg } = c;
  const { numKvHeads: KV, headDim: hd } = cfg;
  const ctxLen = g.input('ctx_len', 'int64', [1]);
  const zero = g.int64s([0]);
  const first = (t: string, axis: number) => g.o('Slice', [t, zero, ctxLen, g.int64s([axis])]);
  const fresh = projectQkv(
    c,
    w,
    `l${layer}`,
    first(x, 1),
    { cos: first(rope.cos, 0), sin: first(rope.sin, 0) },
    false,
  );
  const end = g.o('Add', [ctxLen, g.int64s([1])]);
  const cachedRows = (name: string) =>
    g.o('Slice', [g.input(name, c.t, [1, 'N', KV, hd]), g.int64s([1]), end, g.int64s([1])]);
  const sq = (a: string, b: string) => {
    const d = g.o('Sub', [c.high(a), c.high(b)]);
    return g.o('ReduceSum', [g.o('Mul', [d, d]), g.int64s([0, 2, 3])], { keepdims: 0 });
  };
  const parts: string[] = [];
  if (metric !== 'v') parts.push(sq(fresh.k4, cachedRows('cached_k')));
  if (metric !== 'k') parts.push(sq(fresh.v4, cachedRows('cached_v')));
  return parts.length === 1 ? parts[0] : g.o('Add', parts);
}

/** A stack of decoder layers (see StackGraphOptions); output names: logits, hidden, dev, k_l, v_l. */
export function buildStackGraph(cfg: ModelConfig, weights: ModelWeights, o: StackGraphOptions): DeviceGraph {
  const { numKvHeads: KV, headDim: hd, hiddenSize: D, vocabSize: V } = cfg;
  const g = new GraphBuilder(`stack_${o.from}_${o.to}`);
  const c = new Ctx(g, cfg, o.dtype);
  let x = stackInput(c, weights, o.input);
  const qPos = g.input('q_pos', 'int32', ['T']);
  const kPos = g.input('k_pos', 'int32', ['K']);
  const one = g.int64s([1]);
  const rope = {
    cos: c.low(g.o('Unsqueeze', [g.input('cos', 'float', ['T', hd / 2]), one])),
    sin: c.low(g.o('Unsqueeze', [g.input('sin', 'float', ['T', hd / 2]), one])),
  };
  const mask = o.to > o.from ? positionMask(g, qPos, kPos) : '';
  const rows = o.cache === 'scatter' ? g.input('scatter_rows', 'int64', ['T', 1]) : undefined;
  const cacheDims = o.cache === 'append' ? ['B', 'S', KV, hd] : [1, 'N', KV, hd];
  for (let l = o.from; l < o.to; l++) {
    const io: LayerCacheIo = { mode: o.cache, rows };
    if (o.cache !== 'none') {
      const prefix = o.cache === 'append' ? 'past' : 'cache';
      io.k = g.input(`${prefix}_k_${l}`, c.t, cacheDims);
      io.v = g.input(`${prefix}_v_${l}`, c.t, cacheDims);
    }
    const r = decoderLayer(c, weights.layers[l], l, x, rope, mask, io);
    g.output(`k_${l}`, r.k, c.t, ['B', 'R', KV, hd]);
    g.output(`v_${l}`, r.v, c.t, ['B', 'R', KV, hd]);
    x = r.out;
  }
  if (o.deviation) {
    const dev = deviation(c, weights.layers[o.to], o.to, x, rope, o.deviation);
    g.output('dev', dev, 'float', ['C']);
  }
  if (o.emitHidden) g.output('hidden', x, 'float', ['B', 'T', D]);
  if (o.head) g.output('logits', logitsOfLastRow(c, weights, x), 'float', ['B', V]);
  return finish(g, ['logits', 'dev']);
}

/**
 * Assemble a request's cache from chunk caches already on the device: for layers [from, L), BOS's row,
 * then each chunk's rows with keys rotated from positions 1…n to the chunk's offset (by `c{i}_cos/sin`,
 * the rotation of its offset − 1), then (withQuestion) `q_len` zero rows the blend overwrites.
 * Inputs: bos_k/bos_v [L, 1, KV, hd], c{i}_k/c{i}_v [L, n_i, KV, hd]; outputs k_l/v_l [1, N, KV, hd].
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
  const ks = [layers(g.input('bos_k', c.t, [L, 1, KV, hd]))];
  const vs = [layers(g.input('bos_v', c.t, [L, 1, KV, hd]))];
  for (let i = 0; i < chunks; i++) {
    const k = layers(g.input(`c${i}_k`, c.t, [L, `n${i}`, KV, hd]));
    const cos = g.input(`c${i}_cos`, 'float', [hd / 2]);
    const sin = g.input(`c${i}_sin`, 'float', [hd / 2]);
    ks.push(c.low(ropeLast(c, c.high(k), cos, sin)));
    vs.push(layers(g.input(`c${i}_v`, c.t, [L, `n${i}`, KV, hd])));
  }
  if (withQuestion) {
    const qLen = g.input('q_len', 'int64', [1]);
    const shape = g.o('Concat', [g.int64s([L - from]), qLen, g.int64s([KV, hd])], { axis: 0 });
    const zeros = g.o('Expand', [g.scalar(0, 'zero', c.t), shape]);
    ks.push(zeros);
    vs.push(zeros);
  }
  const n = L - from;
  const split = (all: string[], name: string) => {
    const whole = g.o('Concat', all, { axis: 1 });
    const outs = n === 1 ? [whole] : g.op('Split', [whole, g.int64s(Array(n).fill(1))], { axis: 0 }, n);
    outs.forEach((t, i) => g.output(`${name}_${from + i}`, t, c.t, [1, 'N', KV, hd]));
  };
  split(ks, 'k');
  split(vs, 'v');
  return finish(g, []);
}

/** Host fp32 [L, n, KV, hd] K and V → device tensors in the compute precision (outputs k_dev, v_dev). */
export function buildUploadGraph(cfg: ModelConfig, dtype: DeviceDtype): DeviceGraph {
  const { numKvHeads: KV, headDim: hd } = cfg;
  const g = new GraphBuilder('upload');
  const c = new Ctx(g, cfg, dtype);
  for (const name of ['k', 'v']) {
    const x = g.input(name, 'float', ['L', 'n', KV, hd]);
    g.output(`${name}_dev`, c.low(x), c.t, ['L', 'n', KV, hd]);
  }
  return finish(g, []);
}

/** Device tensors t0…t{count-1} → fp32 host tensors o0…: the one way results come back from the device. */
export function buildDownloadGraph(cfg: ModelConfig, dtype: DeviceDtype, count: number): DeviceGraph {
  const g = new GraphBuilder('download');
  const c = new Ctx(g, cfg, dtype);
  for (let i = 0; i < count; i++) {
    g.output(`o${i}`, c.high(g.input(`t${i}`, c.t, ['B', 'R', 'H', 'D'])), 'float', ['B', 'R', 'H', 'D']);
  }
  return finish(g, g.outputNames());
}
