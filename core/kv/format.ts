import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { KvFormatError, KvMismatchError } from '../errors.js';
import { float16ArrayToFloat32, float32ArrayToFloat16 } from '../util/half.js';
import { dequantizeInt8, int8HalfBytes, quantizeInt8Half, viewInt8Half } from './quantize.js';
import type { StoredKvLayer } from './stored.js';

/**
 * The binary format of one chunk's KV cache, little-endian. Version 1 holds fp16 and fp32 caches, version 2
 * int8 ones; the header is the same:
 *
 *   0  magic "CBKV"            4  u16 format version     6  u8 dtype (v1: 1 fp16, 2 fp32; v2: 3 int8)
 *   7  u8 reserved
 *   8  u32 header bytes        12 u32 layers             16 u32 kv heads               20 u32 head dim
 *   24 u32 tokens              28 [32] model fingerprint (sha256)
 *   60 [32] sha256 of the token ids (int32 LE)
 *   92 i32[tokens] the RoPE position each cached key is rotated at
 *   .. u32[layers] crc32 of each layer's bytes
 *   .. u32 crc32 of every header byte before it
 *   header bytes onward: for each layer, K [tokens, kvHeads, headDim] then V, in dtype; int8 (see
 *   core/kv/quantize.ts): [K int8 tokens×kvHeads×headDim][K scales, fp16, tokens×kvHeads][V int8][V scales].
 *
 * One layer is one byte range (`layerByteRange`), so a reader can fetch and validate layer by layer and
 * overlap loading with compute. Every field is checked on read; any defect is a KvFormatError (or
 * KvMismatchError for a valid object of another model/chunk), which callers treat as a cache miss.
 */
export const KV_MAGIC = 'CBKV';
const FIXED = 92;

export type KvDtype = 'float16' | 'float32' | 'int8';
export const KV_DTYPES: readonly KvDtype[] = ['float16', 'float32', 'int8'];
const DTYPE_CODE: Record<KvDtype, number> = { float16: 1, float32: 2, int8: 3 };

/** The format version an object of `dtype` is written in: 1 for fp16 and fp32, 2 for int8. */
export function kvFormatVersion(dtype: KvDtype): number {
  return dtype === 'int8' ? 2 : 1;
}

/** Precision rank: fp32 and fp16 serve each other; int8 is coarser. */
const RANK: Record<KvDtype, number> = { float32: 2, float16: 2, int8: 1 };

/**
 * Whether a reader configured for `wanted` (its KV_DTYPE) serves an object stored in `stored`: one at
 * least as precise. A reader configured for int8 serves fp16 and fp32 objects; one configured for fp16 or
 * fp32 never serves int8 (it recomputes and rewrites the chunk in its own dtype).
 */
export function kvDtypeServes(stored: KvDtype, wanted: KvDtype): boolean {
  return RANK[stored] >= RANK[wanted];
}

export interface ChunkKv {
  /** Hex sha256 of the model (see fingerprintModel). */
  fingerprint: string;
  tokenIds: readonly number[];
  positions: ArrayLike<number>;
  kvHeads: number;
  headDim: number;
  /** Per layer [tokens, kvHeads, headDim]. */
  keys: Float32Array[];
  values: Float32Array[];
}

export interface KvHeader {
  version: number;
  dtype: KvDtype;
  headerBytes: number;
  numLayers: number;
  kvHeads: number;
  headDim: number;
  tokens: number;
  fingerprint: string;
  tokenIdsHash: string;
  positions: Int32Array;
  layerCrcs: Uint32Array;
}

export function tokenIdsHash(ids: readonly number[]): string {
  return createHash('sha256')
    .update(new Uint8Array(Int32Array.from(ids).buffer))
    .digest('hex');
}

/** Bytes of one of a layer's halves (K or V). */
function halfBytes(h: Pick<KvHeader, 'tokens' | 'kvHeads' | 'headDim' | 'dtype'>): number {
  const rows = h.tokens * h.kvHeads;
  if (h.dtype === 'int8') return int8HalfBytes(rows, h.headDim);
  return rows * h.headDim * (h.dtype === 'float16' ? 2 : 4);
}

/** Stored bytes per token of a model's K/V over every layer (the header's 4 bytes a token excluded). */
export function kvBytesPerToken(dtype: KvDtype, numLayers: number, kvHeads: number, headDim: number): number {
  return numLayers * layerBytes({ tokens: 1, kvHeads, headDim, dtype });
}

export function headerBytesFor(tokens: number, layers: number): number {
  return FIXED + 4 * tokens + 4 * layers + 4;
}

export function layerBytes(h: Pick<KvHeader, 'tokens' | 'kvHeads' | 'headDim' | 'dtype'>): number {
  return 2 * halfBytes(h);
}

/** [start, end) of layer `l`'s K and V in the object. */
export function layerByteRange(h: KvHeader, l: number): [number, number] {
  const n = layerBytes(h);
  return [h.headerBytes + l * n, h.headerBytes + (l + 1) * n];
}

export function totalBytes(h: KvHeader): number {
  return h.headerBytes + h.numLayers * layerBytes(h);
}

/** Values to encode: fp32, or fp16 bits (a Uint16Array, as a float16 GPU computed them). */
export type KvValues = Float32Array | Uint16Array;

/** What encodeChunkKv takes: a ChunkKv whose values may be fp16 bits. */
export type ChunkKvInput = Omit<ChunkKv, 'keys' | 'values'> & {
  keys: readonly KvValues[];
  values: readonly KvValues[];
};

/** Write one half of a layer (K or V) into `out` in `dtype`. */
function encodeHalf(a: KvValues, dtype: KvDtype, headDim: number, out: Uint8Array): void {
  if (dtype === 'int8') {
    quantizeInt8Half(a instanceof Float32Array ? a : float16ArrayToFloat32(a), headDim, out);
    return;
  }
  let typed: KvValues = a;
  if (dtype === 'float16' && a instanceof Float32Array) typed = float32ArrayToFloat16(a);
  if (dtype === 'float32' && a instanceof Uint16Array) typed = float16ArrayToFloat32(a);
  out.set(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
}

export function encodeChunkKv(kv: ChunkKvInput, dtype: KvDtype = 'float16'): Buffer {
  const L = kv.keys.length;
  const T = kv.tokenIds.length;
  const row = kv.kvHeads * kv.headDim;
  if (kv.values.length !== L) throw new KvFormatError('keys and values have different layer counts');
  if (kv.positions.length !== T) throw new KvFormatError('one position per token is required');
  if (!/^[0-9a-f]{64}$/.test(kv.fingerprint)) throw new KvFormatError('fingerprint must be 64 hex digits');
  for (let l = 0; l < L; l++) {
    if (kv.keys[l].length !== T * row || kv.values[l].length !== T * row) {
      throw new KvFormatError(`layer ${l}: expected ${T * row} values for K and V`);
    }
  }
  const headerBytes = headerBytesFor(T, L);
  const per = layerBytes({ tokens: T, kvHeads: kv.kvHeads, headDim: kv.headDim, dtype });
  const buf = Buffer.alloc(headerBytes + L * per);
  buf.write(KV_MAGIC, 0, 'latin1');
  buf.writeUInt16LE(kvFormatVersion(dtype), 4);
  buf.writeUInt8(DTYPE_CODE[dtype], 6);
  buf.writeUInt32LE(headerBytes, 8);
  buf.writeUInt32LE(L, 12);
  buf.writeUInt32LE(kv.kvHeads, 16);
  buf.writeUInt32LE(kv.headDim, 20);
  buf.writeUInt32LE(T, 24);
  Buffer.from(kv.fingerprint, 'hex').copy(buf, 28);
  Buffer.from(tokenIdsHash(kv.tokenIds), 'hex').copy(buf, 60);
  for (let t = 0; t < T; t++) buf.writeInt32LE(kv.positions[t], FIXED + 4 * t);
  const crcAt = FIXED + 4 * T;
  for (let l = 0; l < L; l++) {
    const start = headerBytes + l * per;
    encodeHalf(kv.keys[l], dtype, kv.headDim, buf.subarray(start, start + per / 2));
    encodeHalf(kv.values[l], dtype, kv.headDim, buf.subarray(start + per / 2, start + per));
    buf.writeUInt32LE(crc32(buf.subarray(start, start + per)), crcAt + 4 * l);
  }
  buf.writeUInt32LE(crc32(buf.subarray(0, headerBytes - 4)), headerBytes - 4);
  return buf;
}

/** Parse and validate the header; `buf` may hold just the header or the whole object. */
export function decodeKvHeader(buf: Uint8Array): KvHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < FIXED)
    throw new KvFormatError(`KV object truncated: ${b.length} bytes, header needs ${FIXED}`);
  if (b.toString('latin1', 0, 4) !== KV_MAGIC) throw new KvFormatError('not a KV object (bad magic)');
  const version = b.readUInt16LE(4);
  if (version !== 1 && version !== 2) throw new KvFormatError(`unsupported KV format version ${version}`);
  const code = b.readUInt8(6);
  const dtype = KV_DTYPES.find((d) => DTYPE_CODE[d] === code && kvFormatVersion(d) === version);
  if (!dtype) throw new KvFormatError(`unknown KV dtype code ${code} in format version ${version}`);
  const headerBytes = b.readUInt32LE(8);
  const numLayers = b.readUInt32LE(12);
  const kvHeads = b.readUInt32LE(16);
  const headDim = b.readUInt32LE(20);
  const tokens = b.readUInt32LE(24);
  if (headerBytes !== headerBytesFor(tokens, numLayers))
    throw new KvFormatError('KV header length is inconsistent');
  if (b.length < headerBytes)
    throw new KvFormatError(`KV header truncated: ${b.length} of ${headerBytes} bytes`);
  if (crc32(b.subarray(0, headerBytes - 4)) !== b.readUInt32LE(headerBytes - 4)) {
    throw new KvFormatError('KV header checksum mismatch');
  }
  const positions = new Int32Array(tokens);
  for (let t = 0; t < tokens; t++) positions[t] = b.readInt32LE(FIXED + 4 * t);
  const layerCrcs = new Uint32Array(numLayers);
  for (let l = 0; l < numLayers; l++) layerCrcs[l] = b.readUInt32LE(FIXED + 4 * tokens + 4 * l);
  return {
    version,
    dtype,
    headerBytes,
    numLayers,
    kvHeads,
    headDim,
    tokens,
    fingerprint: b.toString('hex', 28, 60),
    tokenIdsHash: b.toString('hex', 60, 92),
    positions,
    layerCrcs,
  };
}

/**
 * One layer from exactly its byte range, in its stored form (see StoredKvLayer): views of `bytes` where
 * they are aligned for their element type, else of one aligned copy; nothing widened. The checksum is
 * checked unless `verified` (bytes that passed it on their way into an in-memory tier).
 */
export function decodeStoredKvLayer(
  h: KvHeader,
  l: number,
  bytes: Uint8Array,
  verified = false,
): StoredKvLayer {
  const n = layerBytes(h);
  if (l < 0 || l >= h.numLayers) throw new KvFormatError(`layer ${l} out of range`);
  if (bytes.length !== n) throw new KvFormatError(`layer ${l} truncated: ${bytes.length} of ${n} bytes`);
  if (!verified && crc32(bytes) !== h.layerCrcs[l]) throw new KvFormatError(`layer ${l} checksum mismatch`);
  if (h.dtype === 'int8') {
    // int8 values need no alignment; viewInt8Half copies the scales only where they are misaligned.
    const rows = h.tokens * h.kvHeads;
    const k = viewInt8Half(bytes.subarray(0, n / 2), rows, h.headDim);
    const v = viewInt8Half(bytes.subarray(n / 2), rows, h.headDim);
    return { dtype: 'int8', k: k.q, v: v.q, kScale: k.scale, vScale: v.scale };
  }
  const size = h.dtype === 'float16' ? 2 : 4;
  const count = n / 2 / size;
  let aligned = bytes;
  if (bytes.byteOffset % size !== 0) {
    aligned = new Uint8Array(n);
    aligned.set(bytes);
  }
  if (h.dtype === 'float16') {
    const all = new Uint16Array(aligned.buffer, aligned.byteOffset, 2 * count);
    return { dtype: 'float16', k: all.subarray(0, count), v: all.subarray(count) };
  }
  const all = new Float32Array(aligned.buffer, aligned.byteOffset, 2 * count);
  return { dtype: 'float32', k: all.subarray(0, count), v: all.subarray(count) };
}

/** A stored layer's K and V as fp32 (what a host engine computes with); int8 dequantized. */
export function widenStoredLayer(s: StoredKvLayer): { k: Float32Array; v: Float32Array } {
  switch (s.dtype) {
    case 'float32':
      return { k: s.k, v: s.v };
    case 'float16':
      return { k: float16ArrayToFloat32(s.k), v: float16ArrayToFloat32(s.v) };
    case 'int8':
      return { k: dequantizeInt8(s.k, s.kScale), v: dequantizeInt8(s.v, s.vScale) };
  }
}

/** Decode one layer from exactly its byte range, checking its checksum, as fp32. */
export function decodeKvLayer(
  h: KvHeader,
  l: number,
  bytes: Uint8Array,
): { k: Float32Array; v: Float32Array } {
  return widenStoredLayer(decodeStoredKvLayer(h, l, bytes));
}

export interface KvExpectation {
  fingerprint?: string;
  tokenIds?: readonly number[];
  numLayers?: number;
  kvHeads?: number;
  headDim?: number;
  /** The reader's KV_DTYPE: an object stored in a coarser dtype is a mismatch (see kvDtypeServes). */
  kvDtype?: KvDtype;
}

/** Check that a valid header is the one the caller wants; mismatches are KvMismatchError. */
export function checkKvHeader(h: KvHeader, expect: KvExpectation): void {
  if (expect.fingerprint !== undefined && h.fingerprint !== expect.fingerprint) {
    throw new KvMismatchError('KV object was computed by another model (fingerprint mismatch)');
  }
  if (expect.tokenIds !== undefined) {
    if (expect.tokenIds.length !== h.tokens) {
      throw new KvMismatchError(`KV object holds ${h.tokens} tokens, expected ${expect.tokenIds.length}`);
    }
    if (tokenIdsHash(expect.tokenIds) !== h.tokenIdsHash)
      throw new KvMismatchError('KV object holds other tokens');
  }
  for (const f of ['numLayers', 'kvHeads', 'headDim'] as const) {
    if (expect[f] !== undefined && expect[f] !== h[f]) {
      throw new KvMismatchError(`KV object has ${f} ${h[f]}, expected ${expect[f]}`);
    }
  }
  if (expect.kvDtype !== undefined && !kvDtypeServes(h.dtype, expect.kvDtype)) {
    throw new KvMismatchError(`KV object is stored in ${h.dtype}, coarser than the ${expect.kvDtype} wanted`);
  }
}

/** Decode and validate a whole object. */
export function decodeChunkKv(
  buf: Uint8Array,
  expect: KvExpectation = {},
): { header: KvHeader; kv: ChunkKv } {
  const header = decodeKvHeader(buf);
  checkKvHeader(header, expect);
  const total = totalBytes(header);
  if (buf.length !== total) {
    throw new KvFormatError(`KV object is ${buf.length} bytes, header says ${total}`);
  }
  const keys: Float32Array[] = [];
  const values: Float32Array[] = [];
  for (let l = 0; l < header.numLayers; l++) {
    const [s, e] = layerByteRange(header, l);
    const { k, v } = decodeKvLayer(header, l, buf.subarray(s, e));
    keys.push(k);
    values.push(v);
  }
  return {
    header,
    kv: {
      fingerprint: header.fingerprint,
      tokenIds: expect.tokenIds ?? [],
      positions: header.positions,
      kvHeads: header.kvHeads,
      headDim: header.headDim,
      keys,
      values,
    },
  };
}

/** A chunk's identity: the model and its token ids, never its text. */
export function chunkKey(fingerprint: string, tokenIds: readonly number[], salt = ''): string {
  const h = createHash('sha256').update(fingerprint).update(':').update(tokenIdsHash(tokenIds));
  // A salt (a tenant's, see core/documents/names.ts) makes another identity for the same tokens; none keeps
  // the keys chunks had before salts existed.
  if (salt !== '') h.update(':salt:').update(salt);
  return h.digest('hex');
}

/** Object-store key of a chunk's KV: grouped by model so one model's caches can be listed or dropped. */
export function chunkObjectKey(fingerprint: string, key: string): string {
  return `kv/${fingerprint.slice(0, 16)}/${key.slice(0, 2)}/${key}.kv`;
}
