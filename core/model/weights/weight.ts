/**
 * A weight tensor as the engine sees it: a shape, the checkpoint's precision, and its values on request.
 * Held weights (llama2.c checkpoints, random models) keep their fp32 array; checkpoint weights are read
 * from their file each time they are asked for, so a model of any size loads without holding a copy: the
 * graphs that need a tensor read it, convert it to the format they run (fp32, fp16 or 4-bit) and let it go.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { ModelLoadError } from '../../errors.js';
import type { LoadCache } from './load-cache.js';
import {
  bfloat16ArrayToFloat32,
  float16ArrayToFloat32,
  float32ArrayToFloat16,
  float32ToFloat16Bits,
} from '../../util/half.js';

export type StoredDtype = 'float32' | 'float16' | 'bfloat16';

export interface Weight {
  readonly shape: readonly number[];
  /** Number of values. */
  readonly size: number;
  /** The precision it is stored in. */
  readonly dtype: StoredDtype;
  /** fp32 values: the held array itself, or a fresh array read from the checkpoint. */
  f32(): Float32Array;
  /** The stored little-endian bytes (a view of a held array; read anew from a checkpoint). */
  raw(): Uint8Array;
  /** Rows [from, to) of a matrix, as a weight of their own (nothing is read). */
  rows(from: number, to: number): Weight;
  /**
   * Checkpoint weights: the load cache their conversions are kept in, and what names this tensor there
   * (its file, offset, dtype and shape; the cache itself is bound to the model's fingerprint).
   */
  readonly cache?: { store: LoadCache; id: string };
}

function rowRange(shape: readonly number[], from: number, to: number): number {
  if (shape.length !== 2 || from < 0 || to > shape[0] || from >= to) {
    throw new Error(`rows [${from}, ${to}) of a weight of shape [${shape.join(', ')}]`);
  }
  return shape[1];
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** A weight whose fp32 values are held in memory. */
export function heldWeight(values: Float32Array, shape: readonly number[]): Weight {
  if (values.length !== numel(shape)) {
    throw new Error(`weight of shape [${shape.join(', ')}] given ${values.length} values`);
  }
  return {
    shape,
    size: values.length,
    dtype: 'float32',
    f32: () => values,
    raw: () => new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
    rows: (from, to) => {
      const cols = rowRange(shape, from, to);
      return heldWeight(values.subarray(from * cols, to * cols), [to - from, cols]);
    },
  };
}

/** Stored bytes (fp32, fp16 or bf16, little-endian) to fp32. */
export function storedToFloat32(dtype: StoredDtype, bytes: Uint8Array): Float32Array {
  if (dtype === 'float32') {
    const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
  }
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  const bits = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
  return dtype === 'float16' ? float16ArrayToFloat32(bits) : bfloat16ArrayToFloat32(bits);
}

const BYTES: Record<StoredDtype, number> = { float32: 4, float16: 2, bfloat16: 2 };

/**
 * A weight read from bytes [begin, begin + size × width) of a file on each request (the file is opened
 * for the read, so a loaded model holds no descriptor). Reads are synchronous: graphs are built on the
 * inference thread, never on a thread that serves requests.
 */
export function fileWeight(
  file: string,
  begin: number,
  dtype: StoredDtype,
  shape: readonly number[],
  store?: LoadCache | null,
): Weight {
  const size = numel(shape);
  const raw = () => {
    const bytes = new Uint8Array(size * BYTES[dtype]);
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (err) {
      throw new ModelLoadError(`cannot read weights from ${file}: ${(err as Error).message}`, { cause: err });
    }
    try {
      let done = 0;
      while (done < bytes.byteLength) {
        const n = readSync(fd, bytes, done, bytes.byteLength - done, begin + done);
        if (n === 0) throw new ModelLoadError(`${file}: truncated at byte ${begin + done}`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    return bytes;
  };
  const rows = (from: number, to: number) => {
    const cols = rowRange(shape, from, to);
    return fileWeight(file, begin + from * cols * BYTES[dtype], dtype, [to - from, cols], store);
  };
  const cache = store
    ? { store, id: `${path.basename(file)}@${begin}:${dtype}:${shape.join('x')}` }
    : undefined;
  return { shape, size, dtype, raw, f32: () => storedToFloat32(dtype, raw()), rows, cache };
}

/**
 * The token embedding table held in its stored precision (half the bytes of fp32 for fp16 and bf16
 * checkpoints); rows are widened to fp32 exactly on lookup.
 */
export class EmbeddingTable {
  private readonly f32: Float32Array | null;
  private readonly half: Uint16Array | null;

  constructor(
    readonly weight: Weight,
    readonly width: number,
  ) {
    const raw = weight.raw();
    this.f32 = weight.dtype === 'float32' ? weight.f32() : null;
    this.half =
      weight.dtype === 'float32' ? null : new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2);
  }

  /** Row `id` written as fp32 at `out[at…]`. */
  row(id: number, out: Float32Array, at: number): void {
    const D = this.width;
    if (this.f32) {
      out.set(this.f32.subarray(id * D, (id + 1) * D), at);
      return;
    }
    const row = this.half!.subarray(id * D, (id + 1) * D);
    out.set(this.weight.dtype === 'float16' ? float16ArrayToFloat32(row) : bfloat16ArrayToFloat32(row), at);
  }
}

let bf16ToF16: Uint16Array | null = null;

/** Every bf16 bit pattern's nearest fp16, built once: a bf16 checkpoint converts at a lookup a value. */
function bf16Table(): Uint16Array {
  if (!bf16ToF16) {
    bf16ToF16 = new Uint16Array(65536);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let b = 0; b < 65536; b++) {
      u[0] = b << 16;
      bf16ToF16[b] = float32ToFloat16Bits(f[0]);
    }
  }
  return bf16ToF16;
}

/** A weight's values as fp16 bits: as stored (fp16), by table (bf16), or rounded from fp32. */
export function float16Bits(w: Weight): Uint16Array {
  if (w.dtype === 'float32') return float32ArrayToFloat16(w.f32());
  const raw = w.raw();
  const aligned = raw.byteOffset % 2 === 0 ? raw : raw.slice();
  const bits = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
  if (w.dtype === 'float16') return bits;
  const table = bf16Table();
  const out = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}
