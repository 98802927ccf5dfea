import { float32ArrayToFloat16 } from '../../util/half.js';
import type { WeightFormat } from '../weights/format.js';
import { Q4_BLOCK, q4Blocks, quantizeQ4Rows, type Q4Matrix } from '../weights/quantize.js';
import type { Weight } from '../weights/weight.js';
import type { DataType, GraphBuilder } from './builder.js';

/**
 * Where a graph's weights go: initializers (the host graphs, as external data) or graph inputs fed from
 * tensors uploaded to the GPU once (the device graphs). `make` is called only for a name not yet added.
 */
export type WeightSink = (
  name: string,
  type: DataType,
  dims: number[],
  make: () => Float32Array | Uint16Array | Uint8Array,
) => string;

/** Initializers of the graph itself. */
export function initializerSink(g: GraphBuilder): WeightSink {
  return (name, type, dims, make) => (g.hasWeight(name) ? name : g.tensor(name, type, dims, make()));
}

/** Row blocks [out_k, in] of one product, stacked by rows (a fused q/k/v or gate/up projection). */
export interface LinearParts {
  parts: readonly { w: Weight; out: number }[];
  /** Input width (the matrices' columns). */
  inputs: number;
}

export interface LinearOptions {
  format: WeightFormat;
  /** The precision x arrives in and the result leaves in. */
  xType: 'float' | 'float16';
  /** MatMulNBits' accuracy_level for q4 (4: int8 products on the CPU; 0: the input's precision). */
  accuracyLevel?: number;
}

/** Concatenate several [out_k, in] matrices along `out` and transpose: [in, sum(out_k)]. */
export function fusedTransposed(mats: { w: Float32Array; out: number }[], inp: number): Float32Array {
  const total = mats.reduce((a, m) => a + m.out, 0);
  const t = new Float32Array(total * inp);
  let col = 0;
  for (const { w, out } of mats) {
    for (let o = 0; o < out; o++) {
      const row = o * inp;
      for (let i = 0; i < inp; i++) t[i * total + col + o] = w[row + i];
    }
    col += out;
  }
  return t;
}

/**
 * x [..., in] times the stacked matrices' transpose: [..., sum(out_k)]. fp32 and fp16 weights are stored
 * transposed for MatMul ([in, out], fp16 weights with x cast to fp16 around the product when x is fp32);
 * q4 weights as MatMulNBits wants them, by output row, with scales in x's precision.
 */
export function linear(
  g: GraphBuilder,
  sink: WeightSink,
  x: string,
  name: string,
  m: LinearParts,
  o: LinearOptions,
): string {
  const N = m.parts.reduce((n, p) => n + p.out, 0);
  const K = m.inputs;
  const f32Parts = () => m.parts.map((p) => ({ w: p.w.f32(), out: p.out }));
  if (o.format === 'q4') {
    // Codes and scales come from one quantization, kept only until both have been taken.
    let q: Q4Matrix | null = null;
    let taken = 0;
    const take =
      <P extends 'packed' | 'scales'>(part: P) =>
      () => {
        q ??= quantizeQ4Rows(
          m.parts.map((p) => ({ w: () => p.w.f32(), rows: p.out })),
          K,
          o.xType,
        );
        const v = q[part];
        if (++taken === 2) q = null;
        return v;
      };
    const nb = q4Blocks(K);
    const b = sink(`${name}.q4`, 'uint8', [N, nb, Q4_BLOCK / 2], take('packed'));
    const s = sink(`${name}.q4_scales`, o.xType, [N * nb], take('scales'));
    const attrs = { K, N, bits: 4, block_size: Q4_BLOCK, accuracy_level: o.accuracyLevel ?? 0 };
    return g.op('MatMulNBits', [x, b, s], attrs, 1, 'com.microsoft')[0];
  }
  const wType = o.format === 'fp16' ? 'float16' : 'float';
  const w = sink(name, wType, [K, N], () => {
    const t = fusedTransposed(f32Parts(), K);
    return wType === 'float16' ? float32ArrayToFloat16(t) : t;
  });
  if (wType === o.xType) return g.o('MatMul', [x, w]);
  // Mixed: fp16 weights under an fp32 graph (the host engine) or fp32 weights under an fp16 one.
  const to = wType === 'float16' ? 10 : 1;
  const back = o.xType === 'float16' ? 10 : 1;
  return g.o('Cast', [g.o('MatMul', [g.o('Cast', [x], { to }), w])], { to: back });
}
