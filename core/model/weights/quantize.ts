/**
 * Block-wise 4- and 8-bit weights in the layout of onnxruntime's MatMulNBits (com.microsoft): a matrix
 * W [N, K] (row-major, y = x Wᵀ, as checkpoints store linear layers) becomes B uint8 [N, ⌈K/block⌉,
 * block·bits/8] — 4-bit: two values a byte, the even index in the low nibble; 8-bit: one a byte — and one
 * scale per block. Symmetric, no zero points (the kernel's default zero point 2^(bits−1): 8 or 128): each
 * block's value of largest magnitude m maps to code 0, so scale = m / −2^(bits−1) and x ≈ (q − zero) ·
 * scale; the opposite end saturates at the top code (+7 or +127 · |scale|).
 * Written here because the quantizer must run inside the loader, in JavaScript, on any checkpoint.
 */
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../util/half.js';
import { quantizeParallel } from './quantize-pool.js';
import type { Weight } from './weight.js';

export const Q4_BLOCK = 32;

/** Bits a weight: 4 (`q4`) or 8 (`q8`). */
export type QuantBits = 4 | 8;

export interface QMatrix {
  rows: number;
  cols: number;
  block: number;
  bits: QuantBits;
  /** [rows, blocks, block · bits / 8] */
  packed: Uint8Array;
  /** [rows × blocks], fp32 values or fp16 bits. */
  scales: Float32Array | Uint16Array;
}

/** A 4-bit matrix (the q4 format). */
export type Q4Matrix = QMatrix;

export const q4Blocks = (cols: number, block = Q4_BLOCK) => Math.ceil(cols / block);

/** Bytes of one block's codes. */
export const blockBytes = (bits: QuantBits, block = Q4_BLOCK) => (block * bits) / 8;

/**
 * Quantize W [rows, cols] to 4 bits. `scaleType` float16 rounds each scale to half precision first, and
 * the codes are taken against the rounded scale (what the kernel will multiply by).
 */
export function quantizeQ4(
  w: Float32Array,
  rows: number,
  cols: number,
  scaleType: 'float' | 'float16' = 'float',
  block = Q4_BLOCK,
): QMatrix {
  return quantizeBlockwise(w, rows, cols, 4, scaleType, block);
}

/** Quantize W [rows, cols] to 8 bits (as quantizeQ4, with 256 codes). */
export function quantizeQ8(
  w: Float32Array,
  rows: number,
  cols: number,
  scaleType: 'float' | 'float16' = 'float',
  block = Q4_BLOCK,
): QMatrix {
  return quantizeBlockwise(w, rows, cols, 8, scaleType, block);
}

/** The block's value of largest magnitude (signed), over w[from, to). */
function largest(w: Float32Array, from: number, to: number): number {
  let m = 0;
  let mAbs = 0;
  for (let i = from; i < to; i++) {
    const v = w[i];
    const a = v < 0 ? -v : v;
    if (a > mAbs) {
      mAbs = a;
      m = v;
    }
  }
  return m;
}

/** The code of w[i] / scale: round half up, offset by the zero point, saturated to [0, top]; padding is 0. */
function code(w: Float32Array, i: number, to: number, inv: number, zero: number, top: number): number {
  const q = i < to ? Math.floor(w[i] * inv + zero + 0.5) : zero;
  return q < 0 ? 0 : q > top ? top : q;
}

export function quantizeBlockwise(
  w: Float32Array,
  rows: number,
  cols: number,
  bits: QuantBits,
  scaleType: 'float' | 'float16' = 'float',
  block = Q4_BLOCK,
): QMatrix {
  if (w.length !== rows * cols) throw new Error(`quantize: ${w.length} values for [${rows}, ${cols}]`);
  const nb = q4Blocks(cols, block);
  const bytes = blockBytes(bits, block);
  const packed = new Uint8Array(rows * nb * bytes);
  const scales = scaleType === 'float16' ? new Uint16Array(rows * nb) : new Float32Array(rows * nb);
  const zero = bits === 4 ? 8 : 128;
  const top = 2 * zero - 1;
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let b = 0; b < nb; b++) {
      const from = row + b * block;
      const to = Math.min(from + block, row + cols);
      let scale = largest(w, from, to) / -zero;
      if (scaleType === 'float16') {
        const h = float32ToFloat16Bits(scale);
        scales[r * nb + b] = h;
        scale = float16BitsToFloat32(h);
      } else scales[r * nb + b] = scale;
      const inv = scale === 0 ? 0 : 1 / scale;
      const out = (r * nb + b) * bytes;
      if (bits === 8) for (let j = 0; j < block; j++) packed[out + j] = code(w, from + j, to, inv, zero, top);
      else {
        for (let j = 0; j < bytes; j++) {
          const i = from + 2 * j;
          packed[out + j] = code(w, i, to, inv, zero, top) | (code(w, i + 1, to, inv, zero, top) << 4);
        }
      }
    }
  }
  return { rows, cols, block, bits, packed, scales };
}

/** The fp32 matrix [rows, cols] a quantized matrix stands for (tests, and the distance reports). */
export function dequantize(q: QMatrix): Float32Array {
  const { rows, cols, block, bits } = q;
  const nb = q4Blocks(cols, block);
  const bytes = blockBytes(bits, block);
  const zero = bits === 4 ? 8 : 128;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const b = Math.floor(c / block);
      const s =
        q.scales instanceof Uint16Array ? float16BitsToFloat32(q.scales[r * nb + b]) : q.scales[r * nb + b];
      const i = c - b * block;
      const at = (r * nb + b) * bytes;
      const code = bits === 8 ? q.packed[at + i] : (q.packed[at + (i >> 1)] >> (i & 1 ? 4 : 0)) & 15;
      out[r * cols + c] = (code - zero) * s;
    }
  }
  return out;
}

/** The 4-bit case of dequantize. */
export const dequantizeQ4 = dequantize;

/**
 * Several matrices with the same columns stacked by rows, quantized part by part (rows are independent).
 * Checkpoint weights are looked up in their load cache first, and stored there once quantized.
 */
export function quantizeRows(
  parts: readonly Weight[],
  cols: number,
  scaleType: 'float' | 'float16',
  bits: QuantBits = 4,
): QMatrix {
  for (const w of parts) {
    if (w.shape[1] !== cols)
      throw new Error(`quantizeRows: a part of shape [${w.shape.join(', ')}], not ${cols} columns`);
  }
  const rows = parts.reduce((n, w) => n + w.shape[0], 0);
  const nb = q4Blocks(cols);
  const store = parts[0].cache?.store;
  const what =
    store && parts.every((w) => w.cache?.store === store)
      ? { kind: 'blockwise', bits, block: Q4_BLOCK, scaleType, parts: parts.map((w) => w.cache!.id) }
      : null;
  const scaleBytes = scaleType === 'float16' ? 2 : 4;
  const hit = what && store!.get(what, [rows * nb * blockBytes(bits), rows * nb * scaleBytes]);
  if (hit) {
    const scales = scaleType === 'float16' ? new Uint16Array(hit[1].buffer) : new Float32Array(hit[1].buffer);
    return { rows, cols, block: Q4_BLOCK, bits, packed: hit[0], scales };
  }
  const q = stackQuantized(parts, rows, scaleType, bits);
  if (what) store!.put(what, [q.packed, q.scales]);
  return q;
}

function stackQuantized(
  parts: readonly Weight[],
  rows: number,
  scaleType: 'float' | 'float16',
  bits: QuantBits,
): QMatrix {
  const quantized = parts.map((w) => quantizeParallel(w, scaleType, bits));
  const packed = new Uint8Array(quantized.reduce((n, q) => n + q.packed.length, 0));
  const scales =
    scaleType === 'float16'
      ? new Uint16Array(quantized.reduce((n, q) => n + q.scales.length, 0))
      : new Float32Array(quantized.reduce((n, q) => n + q.scales.length, 0));
  let p = 0;
  let s = 0;
  for (const q of quantized) {
    packed.set(q.packed, p);
    scales.set(q.scales as never, s);
    p += q.packed.length;
    s += q.scales.length;
  }
  return { rows, cols: parts[0].shape[1], block: Q4_BLOCK, bits, packed, scales };
}
