import type { LayerWeights, ModelConfig } from '../types.js';
import type { Weight } from '../weights/weight.js';

/** One part of a layer's fused attention projection: a weight [out, hidden] and its bias (Qwen2). */
export interface ProjectionPart {
  w: Weight;
  b: Weight | null;
  out: number;
}

/**
 * The parts of a layer's fused projection, in the order host and device graphs split it: q (optional:
 * CacheBlend's check needs only K and V), k, v. Its weight is named `<prefix>.wqkv` or `<prefix>.wkv`.
 */
export function qkvParts(cfg: ModelConfig, w: LayerWeights, withQuery: boolean): ProjectionPart[] {
  const { numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  return [
    ...(withQuery ? [{ w: w.wq, b: w.bq, out: H * hd }] : []),
    { w: w.wk, b: w.bk, out: KV * hd },
    { w: w.wv, b: w.bv, out: KV * hd },
  ];
}

/** The q/k/v biases of a fused projection, concatenated in the order of its parts (Qwen2 has them). */
export function fusedBias(parts: readonly ProjectionPart[], prefix: string): Float32Array {
  const bias = new Float32Array(parts.reduce((n, p) => n + p.out, 0));
  let off = 0;
  for (const p of parts) {
    if (!p.b) throw new Error(`${prefix}: attention biases missing`);
    bias.set(p.b.f32(), off);
    off += p.out;
  }
  return bias;
}
