/**
 * Reader for Hugging Face safetensors checkpoints: one `model.safetensors`, or shards listed by
 * `model.safetensors.index.json`. Tensors are read one at a time from their byte range (a multi-GB shard is
 * never held whole) and converted to fp32.
 *
 * File layout: 8-byte little-endian unsigned header length N, N bytes of JSON header mapping tensor name to
 * `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the first byte after the header, plus an
 * optional `__metadata__` string map), then the data buffer.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ModelLoadError, errorMessage } from '../../errors.js';
import { float16BitsToFloat32 } from '../../util/half.js';
import { exists } from '../../util/fs.js';

export type SafetensorsDtype =
  'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'F8_E4M3' | 'F8_E5M2';

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** A header larger than this is certainly corrupt (real headers are well under 10 MB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte range of the tensor's data in its file. */
  begin: number;
  end: number;
  file: string;
}

export interface Tensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array;
}

// ---------------------------------------------------------------------------------------------------------
// Half-precision conversion

/** One fp16 bit pattern to its (exact) fp32 value. */
export const fp16BitsToFloat = float16BitsToFloat32;

/** One bf16 bit pattern to its (exact) fp32 value. */
export function bf16BitsToFloat(b: number): number {
  const u = new Uint32Array([(b & 0xffff) << 16]);
  return new Float32Array(u.buffer)[0];
}

/** Little-endian fp16 bytes to fp32. `bytes.byteLength` must be even. */
export function fp16BytesToFloat32(bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = float16BitsToFloat32(bytes[2 * i] | (bytes[2 * i + 1] << 8));
  return out;
}

/** Little-endian bf16 bytes to fp32: each value is the top half of an fp32. */
export function bf16BytesToFloat32(bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength >> 1;
  const out = new Float32Array(n);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) bits[i] = ((bytes[2 * i] << 16) | (bytes[2 * i + 1] << 24)) >>> 0;
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Little-endian fp32 bytes to a Float32Array that owns its buffer. */
export function f32BytesToFloat32(bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength >> 2;
  if (LITTLE_ENDIAN && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
    return new Float32Array(bytes.buffer, 0, n);
  }
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + n * 4));
  }
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

export function bytesToFloat32(dtype: SafetensorsDtype, bytes: Uint8Array, what = 'tensor'): Float32Array {
  switch (dtype) {
    case 'F32':
      return f32BytesToFloat32(bytes);
    case 'F16':
      return fp16BytesToFloat32(bytes);
    case 'BF16':
      return bf16BytesToFloat32(bytes);
    default:
      throw new ModelLoadError(`${what}: dtype ${dtype} is not supported (only F32, F16 and BF16 weights)`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Header parsing

/**
 * Parse and validate a safetensors header. `fileSize` is the whole file's size; every tensor's range must lie
 * inside the data buffer and match its dtype and shape.
 */
export function parseSafetensorsHeader(
  headerBytes: Uint8Array,
  dataStart: number,
  fileSize: number,
  file: string,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    throw new ModelLoadError(`${file}: safetensors header is not valid JSON: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ModelLoadError(`${file}: safetensors header is not a JSON object`);
  }
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw && typeof raw === 'object') metadata = raw as Record<string, string>;
      continue;
    }
    const bad = (why: string) => new ModelLoadError(`${file}: bad header entry for tensor '${name}': ${why}`);
    if (!raw || typeof raw !== 'object') throw bad('not an object');
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) throw bad(`unknown dtype ${String(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad('shape must be a list of non-negative integers');
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw bad('data_offsets must be [begin, end] with 0 <= begin <= end');
    }
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = numel * DTYPE_BYTES[dtype as SafetensorsDtype];
    const [begin, end] = offsets as [number, number];
    if (end - begin !== expected) {
      throw bad(`data_offsets span ${end - begin} bytes but ${dtype}[${shape.join(', ')}] needs ${expected}`);
    }
    if (end > dataSize) {
      throw new ModelLoadError(
        `${file}: truncated: tensor '${name}' ends at byte ${dataStart + end} but the file has ${fileSize} bytes`,
      );
    }
    tensors.set(name, {
      name,
      dtype: dtype as SafetensorsDtype,
      shape: shape as number[],
      begin: dataStart + begin,
      end: dataStart + end,
      file,
    });
  }
  return { tensors, metadata };
}

// ---------------------------------------------------------------------------------------------------------
// One file

export class SafetensorsFile {
  private constructor(
    readonly file: string,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
    private readonly handle: FileHandle,
  ) {}

  static async open(file: string): Promise<SafetensorsFile> {
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch (err) {
      throw new ModelLoadError(`cannot open ${file}: ${errorMessage(err)}`, { cause: err });
    }
    try {
      const { size } = await handle.stat();
      if (size < 8)
        throw new ModelLoadError(`${file}: truncated: ${size} bytes, no safetensors header length`);
      const lenBuf = new Uint8Array(8);
      await readExactly(handle, lenBuf, 0, file);
      const headerLen = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
      if (headerLen === 0 || headerLen > MAX_HEADER_BYTES) {
        throw new ModelLoadError(`${file}: implausible safetensors header length ${headerLen}`);
      }
      if (8 + headerLen > size) {
        throw new ModelLoadError(
          `${file}: truncated: header claims ${headerLen} bytes but the file has ${size - 8} after the length`,
        );
      }
      const headerBytes = new Uint8Array(headerLen);
      await readExactly(handle, headerBytes, 8, file);
      const { tensors, metadata } = parseSafetensorsHeader(headerBytes, 8 + headerLen, size, file);
      return new SafetensorsFile(file, tensors, metadata, handle);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new ModelLoadError(`${this.file}: missing tensor '${name}'`);
    return info;
  }

  /** The tensor's raw bytes, in a buffer of their own. */
  async readBytes(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    const bytes = new Uint8Array(info.end - info.begin);
    await readExactly(this.handle, bytes, info.begin, this.file);
    return bytes;
  }

  /** The tensor converted to fp32 (F32, F16 and BF16 only). */
  async read(name: string): Promise<Tensor> {
    const info = this.info(name);
    const bytes = await this.readBytes(name);
    return { dtype: info.dtype, shape: [...info.shape], data: bytesToFloat32(info.dtype, bytes, `${name}`) };
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

async function readExactly(
  handle: FileHandle,
  into: Uint8Array,
  position: number,
  file: string,
): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await handle.read(into, done, into.byteLength - done, position + done);
    if (bytesRead === 0) {
      throw new ModelLoadError(
        `${file}: truncated: wanted ${into.byteLength} bytes at ${position}, got ${done}`,
      );
    }
    done += bytesRead;
  }
}

// ---------------------------------------------------------------------------------------------------------
// A checkpoint: single file or shards

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** Every tensor of a checkpoint directory, whether one file or shards. Close it when done. */
export class SafetensorsCheckpoint {
  private constructor(
    readonly dir: string,
    private readonly files: SafetensorsFile[],
    private readonly byName: ReadonlyMap<string, SafetensorsFile>,
  ) {}

  /** Open `dir/model.safetensors`, or the shards named by `dir/model.safetensors.index.json`. */
  static async open(dir: string): Promise<SafetensorsCheckpoint> {
    const indexPath = path.join(dir, INDEX_FILE);
    const singlePath = path.join(dir, SINGLE_FILE);
    if (await exists(indexPath)) return SafetensorsCheckpoint.openIndex(dir, indexPath);
    if (await exists(singlePath)) {
      const f = await SafetensorsFile.open(singlePath);
      return new SafetensorsCheckpoint(dir, [f], new Map([...f.tensors.keys()].map((k) => [k, f])));
    }
    throw new ModelLoadError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`);
  }

  private static async openIndex(dir: string, indexPath: string): Promise<SafetensorsCheckpoint> {
    let index: unknown;
    try {
      index = JSON.parse(await readFile(indexPath, 'utf8'));
    } catch (err) {
      throw new ModelLoadError(`${indexPath}: not valid JSON: ${errorMessage(err)}`, { cause: err });
    }
    const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
    if (!weightMap || typeof weightMap !== 'object' || Array.isArray(weightMap)) {
      throw new ModelLoadError(`${indexPath}: no weight_map object`);
    }
    const shardNames = new Set<string>();
    for (const [tensor, shard] of Object.entries(weightMap as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\') || shard.startsWith('.')) {
        throw new ModelLoadError(`${indexPath}: bad shard name for '${tensor}': ${String(shard)}`);
      }
      shardNames.add(shard);
    }
    const files: SafetensorsFile[] = [];
    try {
      const byShard = new Map<string, SafetensorsFile>();
      for (const shard of shardNames) {
        const f = await SafetensorsFile.open(path.join(dir, shard));
        files.push(f);
        byShard.set(shard, f);
      }
      const byName = new Map<string, SafetensorsFile>();
      for (const [tensor, shard] of Object.entries(weightMap as Record<string, string>)) {
        const f = byShard.get(shard)!;
        if (!f.has(tensor)) {
          throw new ModelLoadError(`${indexPath}: tensor '${tensor}' is mapped to ${shard}, which lacks it`);
        }
        byName.set(tensor, f);
      }
      return new SafetensorsCheckpoint(dir, files, byName);
    } catch (err) {
      await Promise.all(files.map((f) => f.close().catch(() => undefined)));
      throw err;
    }
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** The checkpoint's files (one, or the index's shards). */
  paths(): string[] {
    return this.files.map((f) => f.file);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.byName.get(name);
    if (!f) throw new ModelLoadError(`${this.dir}: missing tensor '${name}'`);
    return f.info(name);
  }

  async read(name: string): Promise<Tensor> {
    const f = this.byName.get(name);
    if (!f) throw new ModelLoadError(`${this.dir}: missing tensor '${name}'`);
    return f.read(name);
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}
