import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KvFormatError, KvMismatchError } from '../../core/errors.js';
import {
  checkKvHeader,
  decodeChunkKv,
  decodeKvHeader,
  decodeStoredKvLayer,
  encodeChunkKv,
  kvBytesPerToken,
  layerByteRange,
  layerBytes,
  totalBytes,
  widenStoredLayer,
  type ChunkKv,
} from '../../core/kv/format.js';
import { storedLayerBytes } from '../../core/kv/stored.js';
import { seededRandom } from '../../core/model/generate.js';
import { float16BitsToFloat32, float32ArrayToFloat16, float32ToFloat16Bits } from '../../core/util/half.js';

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

/** The reference quantization of one row, written out from the format's definition. */
function quantizeRow(x: Float32Array): { q: number[]; scaleBits: number } {
  const max = Math.max(...Array.from(x, Math.abs));
  const scaleBits = float32ToFloat16Bits(max / 127);
  const s = float16BitsToFloat32(scaleBits);
  const q = Array.from(
    x,
    (v) => (s === 0 ? 0 : Math.sign(v) * Math.min(127, Math.round(Math.abs(v) / s))) || 0,
  );
  return { q, scaleBits };
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('int8 chunk caches', () => {
  it('keeps fp16 and fp32 objects byte-identical to format version 1', () => {
    // The digests of these objects as encoded before int8 existed.
    expect(sha(encodeChunkKv(sample(), 'float16'))).toBe(
      '2db241cddaabeb2a71d96b9f5c1cf9f5a1959908b25c1a4a71eeb1e8a8e9442a',
    );
    expect(sha(encodeChunkKv(sample(), 'float32'))).toBe(
      '6c65d4fc504cde256af25232c9305a876b0dff70045184d390fd34d363b74b62',
    );
    expect(decodeKvHeader(encodeChunkKv(sample(), 'float16')).version).toBe(1);
  });

  it('writes format version 2, dtype code 3, in the documented layer layout', () => {
    const kv = sample();
    const buf = encodeChunkKv(kv, 'int8');
    expect(buf.readUInt16LE(4)).toBe(2);
    expect(buf.readUInt8(6)).toBe(3);
    const h = decodeKvHeader(buf);
    expect(h).toMatchObject({ version: 2, dtype: 'int8', tokens: 7, kvHeads: 2, headDim: 8 });
    const rows = 7 * 2;
    expect(layerBytes(h)).toBe(2 * (rows * 8 + 2 * rows));
    expect(buf.length).toBe(totalBytes(h));
    for (let l = 0; l < 3; l++) {
      const [s] = layerByteRange(h, l);
      const half = rows * 8 + 2 * rows;
      for (const [part, values] of [
        [0, kv.keys[l]],
        [1, kv.values[l]],
      ] as const) {
        const base = s + part * half;
        for (let r = 0; r < rows; r++) {
          const { q, scaleBits } = quantizeRow(values.subarray(r * 8, r * 8 + 8));
          for (let d = 0; d < 8; d++) expect(buf.readInt8(base + r * 8 + d)).toBe(q[d]);
          expect(buf.readUInt16LE(base + rows * 8 + 2 * r)).toBe(scaleBits);
        }
      }
    }
  });

  it('decodes to views of the stored bytes and dequantizes as q × fp16(scale), within half a step', () => {
    const kv = sample();
    const buf = encodeChunkKv(kv, 'int8');
    const h = decodeKvHeader(buf);
    const [s, e] = layerByteRange(h, 1);
    const stored = decodeStoredKvLayer(h, 1, buf.subarray(s, e));
    if (stored.dtype !== 'int8') throw new Error('expected an int8 layer');
    expect(storedLayerBytes(stored)).toBe(e - s);
    expect(Buffer.from(stored.k.buffer, stored.k.byteOffset, stored.k.byteLength)).toEqual(
      buf.subarray(s, s + 7 * 2 * 8),
    );
    expect(stored.kScale).toHaveLength(14);
    const { k, v } = widenStoredLayer(stored);
    for (let r = 0; r < 14; r++) {
      const scale = float16BitsToFloat32(stored.vScale[r]);
      for (let d = 0; d < 8; d++) {
        const i = r * 8 + d;
        expect(k[i]).toBe(Math.fround(stored.k[i] * float16BitsToFloat32(stored.kScale[r])));
        expect(Math.abs(v[i] - kv.values[1][i])).toBeLessThanOrEqual(scale / 2 + 1e-6);
      }
    }
    const whole = decodeChunkKv(buf, { fingerprint: kv.fingerprint, tokenIds: kv.tokenIds });
    expect(whole.kv.values[1]).toEqual(v);
  });

  it('encodes fp16-bit inputs like their fp32 values, zero rows as scale 0', () => {
    const kv = sample();
    const halves = {
      ...kv,
      keys: kv.keys.map(float32ArrayToFloat16),
      values: kv.values.map(float32ArrayToFloat16),
    };
    const widened = decodeChunkKv(encodeChunkKv(kv, 'float16')).kv;
    expect(
      encodeChunkKv(halves, 'int8').equals(
        encodeChunkKv({ ...kv, keys: widened.keys, values: widened.values }, 'int8'),
      ),
    ).toBe(true);

    const zeros = sample(2, 1, 1, 8);
    zeros.keys[0].fill(0);
    const buf = encodeChunkKv(zeros, 'int8');
    const h = decodeKvHeader(buf);
    const [s, e] = layerByteRange(h, 0);
    const stored = decodeStoredKvLayer(h, 0, buf.subarray(s, e));
    if (stored.dtype !== 'int8') throw new Error('expected an int8 layer');
    expect(Array.from(stored.kScale)).toEqual([0, 0]);
    expect(Array.from(widenStoredLayer(stored).k)).toEqual(new Array(16).fill(0));
  });

  it('reads scales that start at an odd offset (odd rows × headDim)', () => {
    const kv = sample(3, 2, 1, 7);
    const { kv: back } = decodeChunkKv(encodeChunkKv(kv, 'int8'));
    for (let i = 0; i < 21; i++) expect(Math.abs(back.keys[1][i] - kv.keys[1][i])).toBeLessThan(0.01);
  });

  const damaged: [string, (b: Buffer, h: ReturnType<typeof decodeKvHeader>) => Buffer, RegExp][] = [
    ['a flipped value byte', (b, h) => flip(b, layerByteRange(h, 2)[0] + 5), /layer 2 checksum/],
    ['a flipped scale byte', (b, h) => flip(b, layerByteRange(h, 0)[0] + 7 * 2 * 8 + 3), /layer 0 checksum/],
    ['a truncated object', (b) => b.subarray(0, b.length - 2), /bytes, header says/],
  ];
  const flip = (b: Buffer, at: number) => {
    const bad = Buffer.from(b);
    bad[at] ^= 0x04;
    return bad;
  };
  it.each(damaged)('rejects %s with KvFormatError', (_, damage, message) => {
    const buf = encodeChunkKv(sample(), 'int8');
    const bad = damage(buf, decodeKvHeader(buf));
    expect(() => decodeChunkKv(bad)).toThrow(KvFormatError);
    expect(() => decodeChunkKv(bad)).toThrow(message);
  });

  it('rejects a dtype code in the wrong format version', () => {
    const v1int8 = Buffer.from(encodeChunkKv(sample(), 'int8'));
    v1int8.writeUInt16LE(1, 4);
    expect(() => decodeKvHeader(v1int8)).toThrow(/dtype code 3 in format version 1/);
    const v2fp16 = Buffer.from(encodeChunkKv(sample(), 'float16'));
    v2fp16.writeUInt16LE(2, 4);
    expect(() => decodeKvHeader(v2fp16)).toThrow(/dtype code 1 in format version 2/);
  });

  it('serves a reader objects at least as precise as its KV_DTYPE, never coarser ones', () => {
    const int8 = decodeKvHeader(encodeChunkKv(sample(), 'int8'));
    const fp16 = decodeKvHeader(encodeChunkKv(sample(), 'float16'));
    const fp32 = decodeKvHeader(encodeChunkKv(sample(), 'float32'));
    expect(() => checkKvHeader(int8, { kvDtype: 'float16' })).toThrow(KvMismatchError);
    expect(() => checkKvHeader(int8, { kvDtype: 'float32' })).toThrow(/stored in int8/);
    for (const h of [int8, fp16, fp32]) expect(() => checkKvHeader(h, { kvDtype: 'int8' })).not.toThrow();
    expect(() => checkKvHeader(fp16, { kvDtype: 'float32' })).not.toThrow();
    expect(() => checkKvHeader(fp32, { kvDtype: 'float16' })).not.toThrow();
  });

  it('states bytes per token for each dtype', () => {
    // 8B shape: 32 layers, 8 KV heads, head dim 128.
    expect(kvBytesPerToken('float16', 32, 8, 128)).toBe(131072);
    expect(kvBytesPerToken('float32', 32, 8, 128)).toBe(262144);
    expect(kvBytesPerToken('int8', 32, 8, 128)).toBe(66560);
  });
});
