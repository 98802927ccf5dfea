import { float16BitsToFloat32, float32ToFloat16Bits } from '../util/half.js';

/**
 * Symmetric int8 quantization of chunk caches (KV_DTYPE=int8). One half of a layer (its K, or its V) is
 * `rows = tokens × kvHeads` rows of `headDim` values, token-major; it is stored as every row's headDim
 * int8 values q in [-127, 127], then one fp16 scale per row (little-endian):
 *
 *   scale = max|x| / 127 over the row, rounded to fp16 (0 when every value is 0);
 *   q = round(x / scale), half away from zero, clamped to [-127, 127] (0 when the scale is 0);
 *   x ≈ q × scale, computed in fp32 (exact: an 8-bit integer times an fp16 value).
 */

const QMAX = 127;
const LARGEST_FP16 = 0x7bff;

/** Bytes of one half of a layer (K or V): the values, then the scales. */
export function int8HalfBytes(rows: number, headDim: number): number {
  return rows * (headDim + 2);
}

/** fp16 bits of max|x|/127 over x[start, end), at most the largest finite fp16. */
function scaleBits(x: Float32Array, start: number, end: number): number {
  let m = 0;
  for (let i = start; i < end; i++) {
    const a = Math.abs(x[i]);
    if (a > m) m = a;
  }
  const bits = float32ToFloat16Bits(m / QMAX);
  return bits > LARGEST_FP16 ? LARGEST_FP16 : bits;
}

/**
 * Quantize one half of a layer (fp32 values, rows × headDim) into `out` (int8HalfBytes long): the values,
 * then the scales' fp16 bits.
 */
export function quantizeInt8Half(x: Float32Array, headDim: number, out: Uint8Array): void {
  const rows = x.length / headDim;
  const scales = new DataView(out.buffer, out.byteOffset + rows * headDim, 2 * rows);
  for (let r = 0; r < rows; r++) {
    const start = r * headDim;
    const bits = scaleBits(x, start, start + headDim);
    scales.setUint16(2 * r, bits, true);
    const s = float16BitsToFloat32(bits);
    for (let i = start; i < start + headDim; i++) {
      const v = x[i];
      // NaN, or a row too small for a nonzero fp16 scale, stores 0.
      const q = s === 0 || Number.isNaN(v) ? 0 : Math.min(QMAX, Math.round(Math.abs(v) / s));
      out[i] = (v < 0 ? -q : q) & 0xff;
    }
  }
}

/** One half of a stored layer viewed as its values and scales (no copy where 2-byte aligned). */
export function viewInt8Half(
  bytes: Uint8Array,
  rows: number,
  headDim: number,
): { q: Int8Array; scale: Uint16Array } {
  const n = rows * headDim;
  const q = new Int8Array(bytes.buffer, bytes.byteOffset, n);
  const at = bytes.byteOffset + n;
  if (at % 2 === 0) return { q, scale: new Uint16Array(bytes.buffer, at, rows) };
  // A copy into fresh memory (a Buffer's slice would be a view at the same odd offset).
  const copy = new Uint8Array(2 * rows);
  copy.set(bytes.subarray(n, n + 2 * rows));
  return { q, scale: new Uint16Array(copy.buffer) };
}

/** int8 values and their per-row scales back to fp32. */
export function dequantizeInt8(q: Int8Array, scale: Uint16Array): Float32Array {
  const out = new Float32Array(q.length);
  const headDim = q.length / scale.length;
  for (let r = 0; r < scale.length; r++) {
    const s = float16BitsToFloat32(scale[r]);
    const base = r * headDim;
    for (let d = 0; d < headDim; d++) out[base + d] = q[base + d] * s;
  }
  return out;
}
