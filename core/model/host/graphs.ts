import type { LayerWeights, ModelConfig } from '../types.js';
import type { WeightFormat } from '../weights/format.js';
import type { Weight } from '../weights/weight.js';
import { GraphBuilder, type OnnxModel } from '../onnx/builder.js';
import { initializerSink, linear, type LinearOptions } from '../onnx/linear.js';
import { fusedBias, qkvParts } from '../onnx/projection.js';

/**
 * ONNX graphs of one decoder layer, of one layer's K/V projection, and of the output head.
 *
 * A layer graph computes T tokens ("new" rows) against S cached rows supplied as inputs, with an explicit
 * additive mask [T, S+T]. That one shape covers every use: full prefill (S = 0, causal mask), KV-cached
 * decoding (T = 1), and CacheBlend's partial recompute (T = the selected tokens, attending by position
 * over the whole mixed cache, with stale rows masked out). Graphs return only the new tokens' K/V rows
 * so the caller appends them to its own cache instead of copying the whole cache out at every step.
 *
 * Layouts: hidden [T, hidden]; cos/sin [T, headDim/2]; K/V rows token-major [n, kvHeads, headDim] so a
 * prefix of the cache is one contiguous range.
 */

export interface LayerGraphOptions {
  /** For the decode benchmark only: also return the whole concatenated cache, the naive design. */
  emitPresent?: boolean;
  /** Format of the linear layers' weights (default fp32). */
  weights?: WeightFormat;
}

/** The host graphs' products: fp32 activations; q4 with int8 products (accuracy level 4). */
function hostLinear(format: WeightFormat = 'fp32'): LinearOptions {
  return { format, xType: 'float', accuracyLevel: 4 };
}

export function rmsNorm(g: GraphBuilder, x: string, weight: string, eps: number): string {
  const ms = g.o('ReduceMean', [g.o('Mul', [x, x])], { axes: [-1], keepdims: 1 });
  const denom = g.o('Sqrt', [g.o('Add', [ms, g.scalar(eps, 'eps')])]);
  return g.o('Mul', [g.o('Div', [x, denom]), weight]);
}

/** Rotate x [T, n, headDim] by per-token cos/sin [T, 1, headDim/2] in the model's pairing layout. */
function rope(g: GraphBuilder, cfg: ModelConfig, x: string, cos: string, sin: string, n: number): string {
  const hd = cfg.headDim;
  const half = hd / 2;
  const axis = g.int64s([2]);
  if (cfg.ropeLayout === 'half') {
    const x1 = g.o('Slice', [x, g.int64s([0]), g.int64s([half]), axis]);
    const x2 = g.o('Slice', [x, g.int64s([half]), g.int64s([hd]), axis]);
    const r1 = g.o('Sub', [g.o('Mul', [x1, cos]), g.o('Mul', [x2, sin])]);
    const r2 = g.o('Add', [g.o('Mul', [x2, cos]), g.o('Mul', [x1, sin])]);
    return g.o('Concat', [r1, r2], { axis: 2 });
  }
  const step = g.int64s([2]);
  const xe = g.o('Slice', [x, g.int64s([0]), g.int64s([hd]), axis, step]);
  const xo = g.o('Slice', [x, g.int64s([1]), g.int64s([hd]), axis, step]);
  const re = g.o('Sub', [g.o('Mul', [xe, cos]), g.o('Mul', [xo, sin])]);
  const ro = g.o('Add', [g.o('Mul', [xe, sin]), g.o('Mul', [xo, cos])]);
  const last = g.int64s([3]);
  const pairs = g.o('Concat', [g.o('Unsqueeze', [re, last]), g.o('Unsqueeze', [ro, last])], { axis: 3 });
  return g.o('Reshape', [pairs, g.int64s([-1, n, hd])]);
}

/**
 * Shared front of the layer and K/V-projection graphs: norm, one fused projection, RoPE. The projection
 * graph leaves the query out (`withQuery` false): CacheBlend's check needs only K and V.
 */
function attentionInputs(
  g: GraphBuilder,
  cfg: ModelConfig,
  w: LayerWeights,
  prefix: string,
  withQuery: boolean,
  format?: WeightFormat,
): { x: string; q3: string | null; k3: string; v3: string } {
  const { hiddenSize: D, numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  const x = g.input('hidden', 'float', ['T', D]);
  const cos = g.input('cos', 'float', ['T', hd / 2]);
  const sin = g.input('sin', 'float', ['T', hd / 2]);
  const one = g.int64s([1]);
  const cosU = g.o('Unsqueeze', [cos, one]);
  const sinU = g.o('Unsqueeze', [sin, one]);

  const h = rmsNorm(g, x, g.weight(`${prefix}.attn_norm`, w.attnNorm.f32(), [D]), cfg.rmsNormEps);
  const parts = qkvParts(cfg, w, withQuery);
  const width = parts.reduce((n, p) => n + p.out, 0);
  const name = `${prefix}.w${withQuery ? 'qkv' : 'kv'}`;
  let proj = linear(g, initializerSink(g), h, name, { parts, inputs: D }, hostLinear(format));
  if (cfg.attentionBias) {
    const bias = fusedBias(parts, prefix);
    proj = g.o('Add', [proj, g.weight(`${prefix}.b${withQuery ? 'qkv' : 'kv'}`, bias, [width])]);
  }
  const outs = g.op('Split', [proj, g.int64s(parts.map((p) => p.out))], { axis: 1 }, parts.length);
  const [k, v] = outs.slice(-2);
  const q3 = withQuery ? rope(g, cfg, g.o('Reshape', [outs[0], g.int64s([-1, H, hd])]), cosU, sinU, H) : null;
  const k3 = rope(g, cfg, g.o('Reshape', [k, g.int64s([-1, KV, hd])]), cosU, sinU, KV);
  const v3 = g.o('Reshape', [v, g.int64s([-1, KV, hd])]);
  return { x, q3, k3, v3 };
}

export function buildLayerGraph(
  cfg: ModelConfig,
  w: LayerWeights,
  layer: number,
  opts: LayerGraphOptions = {},
): OnnxModel {
  const { hiddenSize: D, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: I } = cfg;
  const G = H / KV;
  const g = new GraphBuilder(`layer${layer}`);
  const p = `l${layer}`;
  const { x, q3, k3, v3 } = attentionInputs(g, cfg, w, p, true, opts.weights);
  const lin = hostLinear(opts.weights);
  const sink = initializerSink(g);
  const pastK = g.input('past_k', 'float', ['S', KV, hd]);
  const pastV = g.input('past_v', 'float', ['S', KV, hd]);
  const mask = g.input('mask', 'float', ['T', 'S_plus_T']);

  // Queries grouped by their KV head: [KV, G*T, hd], scaled once here rather than on the scores.
  const qScaled = g.o('Mul', [q3!, g.scalar(1 / Math.sqrt(hd), 'scale')]);
  const qg = g.o('Transpose', [g.o('Reshape', [qScaled, g.int64s([-1, KV, G, hd])])], { perm: [1, 2, 0, 3] });
  const qh = g.o('Reshape', [qg, g.int64s([KV, -1, hd])]);
  const kAll = g.o('Concat', [pastK, k3], { axis: 0 });
  const vAll = g.o('Concat', [pastV, v3], { axis: 0 });
  const kT = g.o('Transpose', [kAll], { perm: [1, 2, 0] }); // [KV, hd, S+T]
  const vH = g.o('Transpose', [vAll], { perm: [1, 0, 2] }); // [KV, S+T, hd]
  const scores = g.o('MatMul', [qh, kT]); // [KV, G*T, S+T]
  const shape4 = g.o('Concat', [g.int64s([KV, G]), g.o('Shape', [mask])], { axis: 0 });
  const masked = g.o('Add', [g.o('Reshape', [scores, shape4]), mask]);
  const probs = g.o('Reshape', [g.o('Softmax', [masked], { axis: -1 }), g.o('Shape', [scores])]);
  const ctx = g.o('MatMul', [probs, vH]); // [KV, G*T, hd]
  const ctxT = g.o('Transpose', [g.o('Reshape', [ctx, g.int64s([KV, G, -1, hd])])], { perm: [2, 0, 1, 3] });
  const attn = g.o('Reshape', [ctxT, g.int64s([-1, H * hd])]);
  const wo = linear(g, sink, attn, `${p}.wo_t`, { parts: [{ w: w.wo, out: D }], inputs: H * hd }, lin);
  const h1 = g.o('Add', [x, wo]);

  const m = rmsNorm(g, h1, g.weight(`${p}.mlp_norm`, w.mlpNorm.f32(), [D]), cfg.rmsNormEps);
  const gateUp = {
    parts: [
      { w: w.wGate, out: I },
      { w: w.wUp, out: I },
    ],
    inputs: D,
  };
  const gu = linear(g, sink, m, `${p}.wgu`, gateUp, lin);
  const [gate, up] = g.op('Split', [gu, g.int64s([I, I])], { axis: 1 }, 2);
  const act = g.o('Mul', [g.o('Mul', [gate, g.o('Sigmoid', [gate])]), up]);
  const down = linear(g, sink, act, `${p}.wdown_t`, { parts: [{ w: w.wDown, out: D }], inputs: I }, lin);
  const out = g.o('Add', [h1, down]);

  g.output('hidden_out', out, 'float', ['T', D]);
  if (opts.emitPresent) {
    g.output('present_k', kAll, 'float', ['S_plus_T', KV, hd]);
    g.output('present_v', vAll, 'float', ['S_plus_T', KV, hd]);
  } else {
    g.output('k', k3, 'float', ['T', KV, hd]);
    g.output('v', v3, 'float', ['T', KV, hd]);
  }
  return g.toModel();
}

/**
 * Only the fresh K/V of one layer (norm, projection, RoPE): what CacheBlend's deviation check needs; with
 * `withQuery`, the queries too (RoPE applied, unscaled), for the question-aware selection.
 */
export function buildKvProjectionGraph(
  cfg: ModelConfig,
  w: LayerWeights,
  layer: number,
  weights?: WeightFormat,
  withQuery = false,
): OnnxModel {
  const { numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  const g = new GraphBuilder(`${withQuery ? 'qkv' : 'kv'}proj${layer}`);
  const { q3, k3, v3 } = attentionInputs(g, cfg, w, `l${layer}`, withQuery, weights);
  if (q3) g.output('q', q3, 'float', ['T', H, hd]);
  g.output('k', k3, 'float', ['T', KV, hd]);
  g.output('v', v3, 'float', ['T', KV, hd]);
  return g.toModel();
}

export function buildHeadGraph(
  cfg: ModelConfig,
  finalNorm: Weight,
  lmHead: Weight,
  weights?: WeightFormat,
): OnnxModel {
  const { hiddenSize: D, vocabSize: V } = cfg;
  const g = new GraphBuilder('head');
  const x = g.input('hidden', 'float', ['N', D]);
  const h = rmsNorm(g, x, g.weight('final_norm', finalNorm.f32(), [D]), cfg.rmsNormEps);
  const head = { parts: [{ w: lmHead, out: V }], inputs: D };
  const logits = linear(g, initializerSink(g), h, 'lm_head_t', head, hostLinear(weights));
  g.output('logits', logits, 'float', ['N', V]);
  return g.toModel();
}
