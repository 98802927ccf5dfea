import type { WeightFormat } from '../weights/format.js';
import { blockBytes, Q4_BLOCK, q4Blocks, quantizeRows, type QMatrix } from '../weights/quantize.js';
import { float16Bits, type Weight } from '../weights/weight.js';
import type { DataType, GraphBuilder } from './builder.js';

export type WeightData = Float32Array | Uint16Array | Uint8Array;

/**
 * Where a graph's weights go: initializers (the host graphs, as external data) or graph inputs fed from
 * tensors uploaded to the GPU once (the device graphs). `make` is called only for a name not yet added.
 * With `transpose`, `make` returns the matrix's transpose ([dims[1], dims[0]], the rows a checkpoint
 * stores): the host transposes it in JavaScript, the device on the GPU as it uploads it.
 */
export type WeightSink = (
  name: string,
  type: DataType,
  dims: number[],
  make: () => WeightData,
  transpose?: boolean,
) => string;

/** [rows, cols] row-major → [cols, rows]. */
export function transpose2d<T extends Float32Array | Uint16Array>(a: T, rows: number, cols: number): T {
  const t = new (a.constructor as new (n: number) => T)(a.length);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) t[c * rows + r] = a[row + c];
  }
  return t;
}

/** Initializers of the graph itself. */
export function initializerSink(g: GraphBuilder): WeightSink {
  return (name, type, dims, make, transpose) => {
    if (g.hasWeight(name)) return name;
    const data = make();
    const values = transpose ? transpose2d(data as Float32Array | Uint16Array, dims[1], dims[0]) : data;
    return g.tensor(name, type, dims, values);
  };
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
  /** MatMulNBits' accuracy_level for q4 and q8 (4: int8 products on the CPU; 0: the input's precision). */
  accuracyLevel?: number;
}

/**
 * The parts' rows stacked: [sum(out_k), in], fp32 or fp16 bits. bf16 checkpoint weights converted to fp16
 * are kept in their load cache (the conversion is a table lookup a weight on one thread); fp32 and fp16
 * checkpoints are read as stored.
 */
function stackedRows(m: LinearParts, type: 'float' | 'float16'): Float32Array | Uint16Array {
  const ws = m.parts.map((p) => p.w);
  const store = ws[0].cache?.store;
  const keep =
    type === 'float16' &&
    ws.some((w) => w.dtype === 'bfloat16') &&
    ws.every((w) => store && w.cache?.store === store);
  const what = keep ? { kind: 'float16', parts: ws.map((w) => w.cache!.id) } : null;
  const hit = what && store!.get(what, [ws.reduce((n, w) => n + w.size, 0) * 2]);
  if (hit) return new Uint16Array(hit[0].buffer);
  const rows = stackRows(m, type);
  if (what) store!.put(what, [rows]);
  return rows;
}

function stackRows(m: LinearParts, type: 'float' | 'float16'): Float32Array | Uint16Array {
  const rows = m.parts.map((p) => (type === 'float' ? p.w.f32() : float16Bits(p.w)));
  if (rows.length === 1) return rows[0];
  const out =
    type === 'float'
      ? new Float32Array(m.parts.reduce((n, p) => n + p.w.size, 0))
      : new Uint16Array(m.parts.reduce((n, p) => n + p.w.size, 0));
  let at = 0;
  for (const r of rows) {
    out.set(r as never, at);
    at += r.length;
  }
  return out;
}

/**
 * x [..., in] times the stacked matrices' transpose: [..., sum(out_k)]. fp32 and fp16 weights are stored
 * transposed for MatMul ([in, out]; fp16 weights with x cast to fp16 around the product when x is fp32);
 * q4 and q8 weights as MatMulNBits wants them, by output row, with scales in x's precision.
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
  if (o.format === 'q4' || o.format === 'q8') return quantizedLinear(g, sink, x, name, m, o, N);
  const wType = o.format === 'fp16' ? 'float16' : 'float';
  const pieces = Math.ceil((N * K * (wType === 'float' ? 4 : 2)) / MAX_TENSOR_BYTES);
  if (pieces > 1 && m.parts.length === 1) return splitLinear(g, sink, x, name, m, o, pieces);
  const w = sink(name, wType, [K, N], () => stackedRows(m, wType), true);
  if (wType === o.xType) return g.o('MatMul', [x, w]);
  // Mixed: fp16 weights under an fp32 graph (the host engine) or fp32 weights under an fp16 one.
  const to = wType === 'float16' ? 10 : 1;
  const back = o.xType === 'float16' ? 10 : 1;
  return g.o('Cast', [g.o('MatMul', [g.o('Cast', [x], { to }), w])], { to: back });
}

/**
 * onnxruntime refuses an initializer of 2 GiB or more ("exceeds the 2147483648 byte limit for embedded
 * initializer data", in-memory external data included): a larger matrix (an fp32 vocabulary head of 128k ×
 * 4,096) is split by output rows into products whose results are concatenated.
 */
export const MAX_TENSOR_BYTES = 2 ** 31 - 2 ** 20;

function splitLinear(
  g: GraphBuilder,
  sink: WeightSink,
  x: string,
  name: string,
  m: LinearParts,
  o: LinearOptions,
  pieces: number,
): string {
  const { w, out } = m.parts[0];
  const step = Math.ceil(out / pieces);
  const outs: string[] = [];
  for (let from = 0, i = 0; from < out; from += step, i++) {
    const to = Math.min(out, from + step);
    const part = { parts: [{ w: w.rows(from, to), out: to - from }], inputs: m.inputs };
    outs.push(linear(g, sink, x, `${name}.${i}`, part, o));
  }
  return g.o('Concat', outs, { axis: -1 });
}

function quantizedLinear(
  g: GraphBuilder,
  sink: WeightSink,
  x: string,
  name: string,
  m: LinearParts,
  o: LinearOptions,
  N: number,
): string {
  const K = m.inputs;
  const bits = o.format === 'q8' ? 8 : 4;
  // Codes and scales come from one quantization, kept only until both have been taken.
  let q: QMatrix | null = null;
  let taken = 0;
  const take =
    <P extends 'packed' | 'scales'>(part: P) =>
    () => {
      q ??= quantizeRows(
        m.parts.map((p) => p.w),
        K,
        o.xType,
        bits,
      );
      const v = q[part];
      if (++taken === 2) q = null;
      return v;
    };
  const nb = q4Blocks(K);
  // q4's names are kept as they were; q8's differ, so a device's weights never mix the two.
  const tag = bits === 8 ? 'q8' : 'q4';
  const b = sink(`${name}.${tag}`, 'uint8', [N, nb, blockBytes(bits)], take('packed'));
  const s = sink(`${name}.${tag}_scales`, o.xType, [N * nb], take('scales'));
  const attrs = { K, N, bits, block_size: Q4_BLOCK, accuracy_level: o.accuracyLevel ?? 0 };
  return g.op('MatMulNBits', [x, b, s], attrs, 1, 'com.microsoft')[0];
}
