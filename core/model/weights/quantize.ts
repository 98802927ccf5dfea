/**
 * Block-wise 4-bit weights in the layout of onnxruntime's MatMulNBits (com.microsoft): a matrix W [N, K]
 * (row-major, y = x Wᵀ, as checkpoints store linear layers) becomes B uint8 [N, ⌈K/block⌉, block/2], two
 * values a byte (the even index in the low nibble), and one scale per block. Symmetric, no zero points
 * (the kernel's default zero point 8): each block's value of largest magnitude m maps to code 0, so
 * scale = m / −8 and x ≈ (q − 8) · scale; the opposite end saturates at code 15 (+7 · |scale|).
 * Written here because the quantizer must run inside the loader, in JavaScript, on any checkpoint.
 */
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../util/half.js';
import { quantizeQ4Parallel } from './quantize-pool.js';
import type { Weight } from './weight.js';

export const Q4_BLOCK = 32;

export interface Q4Matrix {
  rows: number;
  cols: number;
  block: number;
  /** [rows, blocks, block / 2] */
  packed: Uint8Array;
  /** [rows × blocks], fp32 values or fp16 bits. */
  scales: Float32Array | Uint16Array;
}

export const q4Blocks = (cols: number, block = Q4_BLOCK) => Math.ceil(cols / block);

/**
 * Quantize W [rows, cols]. `scaleType` float16 rounds each scale to half precision first, and the codes
 * are taken against the rounded scale (what the kernel will multiply by).
 */
export function quantizeQ4(
  w: Float32Array,
  rows: number,
  cols: number,
  scaleType: 'float' | 'float16' = 'float',
  block = Q4_BLOCK,
): Q4Matrix {
  if (w.length !== rows * cols) throw new Error(`quantizeQ4: ${w.length} values for [${rows}, ${cols}]`);
  const nb = q4Blocks(cols, block);
  const packed = new Uint8Array(rows * nb * (block / 2));
  const scales = scaleType === 'float16' ? new Uint16Array(rows * nb) : new Float32Array(rows * nb);
  const half = block / 2;
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let b = 0; b < nb; b++) {
      const from = row + b * block;
      const to = Math.min(from + block, row + cols);
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
      let scale = m / -8;
      if (scaleType === 'float16') {
        const bits = float32ToFloat16Bits(scale);
        scales[r * nb + b] = bits;
        scale = float16BitsToFloat32(bits);
      } else scales[r * nb + b] = scale;
      const inv = scale === 0 ? 0 : 1 / scale;
      const out = (r * nb + b) * half;
      for (let j = 0; j < half; j++) {
        const i0 = from + 2 * j;
        packed[out + j] = code(i0 < to ? w[i0] * inv : 0) | (code(i0 + 1 < to ? w[i0 + 1] * inv : 0) << 4);
      }
    }
  }
  return { rows, cols, block, packed, scales };
}

/** The 4-bit code of x / scale: round half up, offset 8, saturated to [0, 15]. */
function code(scaled: number): number {
  const q = Math.floor(scaled + 8.5);
  return q < 0 ? 0 : q > 15 ? 15 : q;
}

/** The fp32 matrix [rows, cols] a Q4Matrix stands for (tests, and the distance reports). */
export function dequantizeQ4(q: Q4Matrix): Float32Array {
  const { rows, cols, block } = q;
  const nb = q4Blocks(cols, block);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const b = Math.floor(c / block);
      const s =
        q.scales instanceof Uint16Array ? float16BitsToFloat32(q.scales[r * nb + b]) : q.scales[r * nb + b];
      const i = c - b * block;
      const byte = q.packed[(r * nb + b) * (block / 2) + (i >> 1)];
      const code = i & 1 ? byte >> 4 : byte & 15;
      out[r * cols + c] = (code - 8) * s;
    }
  }
  return out;
}

/** Several matrices with the same columns stacked by rows, quantized part by part (rows are independent). */
export function quantizeQ4Rows(
  parts: readonly Weight[],
  cols: number,
  scaleType: 'float' | 'float16',
): Q4Matrix {
  const quantized = parts.map((w) => {
    if (w.shape[1] !== cols)
      throw new Error(`quantizeQ4Rows: a part of shape [${w.shape.join(', ')}], not ${cols} columns`);
    return quantizeQ4Parallel(w, scaleType);
  });
  const rows = parts.reduce((n, w) => n + w.shape[0], 0);
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
  return { rows, cols, block: Q4_BLOCK, packed, scales };
}
