import type { LayerWeights, ModelWeights } from '../../types.js';
import type { Weight } from '../../weights/weight.js';
import type { Ctx } from './context.js';
import {
  causalAttention,
  decomposedCausalAttention,
  scatterAttention,
  type LayerCacheIo,
} from './attention.js';
import { projectQkv, toHeads } from './projections.js';

/** RMSNorm of fp32 x through onnxruntime's fused kernel, cast to the compute precision. */
export function norm(c: Ctx, x: string, name: string, w: Weight): string {
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
): { out: string; h: string | null; k: string; v: string; q?: string } {
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
  const { kAll: k, vAll: v, q } = attn;
  if (!next) return { out: g.o('Add', [mlpIn.sum, down]), h: null, k, v, q };
  const after = skipNorm(c, mlpIn.sum, down, next.name, next.w);
  return { out: after.sum, h: after.h, k, v, q };
}

/**
 * A layer's attention over its cache (see CacheMode), from its normed input h; the queries (RoPE'd) come
 * back too where they are computed apart from the kernel.
 */
function layerAttention(c: Ctx, w: LayerWeights, prefix: string, h: string, io: LayerCacheIo) {
  if (io.mode !== 'scatter' && !io.mask) return { ...causalAttention(c, io, w, prefix, h), q: undefined };
  const { q, k, v } = projectQkv(c, w, prefix, h, true);
  if (io.mode !== 'scatter') return { ...decomposedCausalAttention(c, io, q!, k, v), q: q! };
  const cache = io.adjust ? { ...io, ...io.adjust(io, k, v) } : io;
  return { ...scatterAttention(c, cache, q!, k, v), q: q! };
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
 * Layers [from, to) on the residual stream x: the first layer's attention norm, then each layer with its
 * residual additions fused into the norms after them. `cache` gives each layer's cache inputs; `emit`
 * takes each layer's cache after the run. With kvOnly the last layer stops at its K/V. Returns the
 * stack's output hidden states (its input when kvOnly cuts the last layer short).
 */
export function layerStack(
  c: Ctx,
  weights: ModelWeights,
  o: { from: number; to: number; kvOnly: boolean },
  x: string,
  cache: (l: number) => LayerCacheIo,
  emit: (l: number, r: { k: string; v: string; q?: string }) => void,
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
