import { describe, expect, it } from 'vitest';
import { KvFormatError, KvMismatchError } from '../../core/errors.js';
import {
  chunkKey,
  decodeChunkKv,
  decodeKvHeader,
  decodeKvLayer,
  encodeChunkKv,
  layerByteRange,
  type ChunkKv,
} from '../../core/kv/format.js';
import { seededRandom } from '../../core/model/generate.js';

function sample(tokens = 7, layers = 3, kvHeads = 2, headDim = 8): ChunkKv {
  const rand = seededRandom(5);
  const arr = () => Float32Array.from({ length: tokens * kvHeads * headDim }, () => rand() * 4 - 2);
  return {
    fingerprint: 'ab'.repeat(32),
    tokenIds: Array.from({ length: tokens }, (_, i) => 10 + i),
    positions: Int32Array.from({ length: tokens }, (_, i) => 1 + i),
    kvHeads,
    headDim,
    keys: Array.from({ length: layers }, arr),
    values: Array.from({ length: layers }, arr),
  };
}

describe('KV cache format', () => {
  it('round-trips fp32 exactly, with every header field', () => {
    const kv = sample();
    const buf = encodeChunkKv(kv, 'float32');
    const { header, kv: back } = decodeChunkKv(buf, { fingerprint: kv.fingerprint, tokenIds: kv.tokenIds });
    expect(header).toMatchObject({
      version: 1,
      dtype: 'float32',
      numLayers: 3,
      kvHeads: 2,
      headDim: 8,
      tokens: 7,
    });
    expect(Array.from(header.positions)).toEqual(Array.from(kv.positions));
    back.keys.forEach((k, l) => expect(k).toEqual(kv.keys[l]));
    back.values.forEach((v, l) => expect(v).toEqual(kv.values[l]));
  });

  it('stores fp16 by default, within half-precision rounding', () => {
    const kv = sample();
    const buf = encodeChunkKv(kv);
    expect(decodeKvHeader(buf).dtype).toBe('float16');
    const { kv: back } = decodeChunkKv(buf);
    for (let l = 0; l < 3; l++) {
      for (let i = 0; i < kv.keys[l].length; i++) {
        expect(Math.abs(back.keys[l][i] - kv.keys[l][i])).toBeLessThanOrEqual(
          Math.abs(kv.keys[l][i]) * 2 ** -11 + 1e-7,
        );
      }
    }
  });

  it('keeps each layer in one byte range that decodes on its own', () => {
    const kv = sample();
    const buf = encodeChunkKv(kv, 'float32');
    const h = decodeKvHeader(buf.subarray(0, 200));
    const [s, e] = layerByteRange(h, 2);
    expect(decodeKvLayer(h, 2, buf.subarray(s, e)).v).toEqual(kv.values[2]);
  });

  it('rejects truncation, flipped bits, bad magic and other versions with KvFormatError', () => {
    const buf = encodeChunkKv(sample());
    expect(() => decodeChunkKv(buf.subarray(0, buf.length - 1))).toThrow(KvFormatError);
    expect(() => decodeChunkKv(buf.subarray(0, 50))).toThrow(KvFormatError);
    const flipped = Buffer.from(buf);
    flipped[flipped.length - 3] ^= 0x10;
    expect(() => decodeChunkKv(flipped)).toThrow(/layer 2 checksum/);
    const header = Buffer.from(buf);
    header[100] ^= 1; // a position byte: caught by the header checksum
    expect(() => decodeChunkKv(header)).toThrow(/header checksum/);
    const magic = Buffer.from(buf);
    magic[0] = 0x58;
    expect(() => decodeChunkKv(magic)).toThrow(/magic/);
    const version = Buffer.from(buf);
    version.writeUInt16LE(9, 4);
    expect(() => decodeChunkKv(version)).toThrow(/version 9/);
  });

  it('rejects a valid object of another model or chunk with KvMismatchError', () => {
    const kv = sample();
    const buf = encodeChunkKv(kv);
    expect(() => decodeChunkKv(buf, { fingerprint: 'cd'.repeat(32) })).toThrow(KvMismatchError);
    expect(() => decodeChunkKv(buf, { tokenIds: [...kv.tokenIds].reverse() })).toThrow(KvMismatchError);
    expect(() => decodeChunkKv(buf, { numLayers: 4 })).toThrow(KvMismatchError);
  });

  it('derives chunk identity from model and token ids only', () => {
    const f = 'ab'.repeat(32);
    expect(chunkKey(f, [1, 2, 3])).toBe(chunkKey(f, [1, 2, 3]));
    expect(chunkKey(f, [1, 2, 3])).not.toBe(chunkKey(f, [1, 2, 4]));
    expect(chunkKey(f, [1, 2, 3])).not.toBe(chunkKey('cd'.repeat(32), [1, 2, 3]));
  });
});
