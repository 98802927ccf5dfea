import type { LayerWeights } from '../../types.js';
import { fusedBias, qkvParts } from '../../onnx/projection.js';
import { rotary, type Ctx } from './context.js';

/** One fused projection of a layer's normed input h [B, T, D] to q (optional), k and v, packed. */
export function projectPacked(c: Ctx, w: LayerWeights, prefix: string, h: string, withQuery: boolean) {
  const { g, cfg } = c;
  const parts = qkvParts(cfg, w, withQuery);
  const width = parts.reduce((n, p) => n + p.out, 0);
  const name = `${prefix}.w${withQuery ? 'qkv' : 'kv'}`;
  let proj = c.linear(h, name, parts, cfg.hiddenSize);
  if (cfg.attentionBias) {
    const bias = () => fusedBias(parts, prefix);
    proj = g.o('Add', [proj, c.weight(`${prefix}.b${withQuery ? 'qkv' : 'kv'}`, bias, [width])]);
  }
  return { proj, sizes: parts.map((p) => p.out) };
}

/** A layer's attention inputs from its normed input h [B, T, D], RoPE applied at the stack's positions. */
export function projectQkv(
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
export function toHeads(c: Ctx, x: string, n: number): string {
  const { g } = c;
  return g.o('Transpose', [g.o('Reshape', [x, g.int64s([0, 0, n, c.cfg.headDim])])], { perm: [0, 2, 1, 3] });
}
