import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelLoadError } from '../../core/errors.js';
import {
  SafetensorsCheckpoint,
  SafetensorsFile,
  bf16BitsToFloat,
  bf16BytesToFloat32,
  fp16BitsToFloat,
  fp16BytesToFloat32,
} from '../../core/model/weights/safetensors.js';
import { HF_FIXTURES_DIR } from '../helpers/hf-fixtures.js';
import { f32Bytes, safetensorsBytes, u16Bytes } from '../helpers/safetensors-writer.js';

/** IEEE 754 binary16 value from its fields, written independently of the implementation's bit tricks. */
function fp16Reference(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * (mant / 1024) * Math.pow(2, -14);
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * Math.pow(2, exp - 15);
}

function f32Bits(x: number): number {
  return new Uint32Array(Float32Array.of(x).buffer)[0];
}

describe('fp16 -> fp32', () => {
  it.each([
    [0x0000, 0],
    [0x3c00, 1],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x7bff, 65504], // largest finite
    [0x0400, 2 ** -14], // smallest normal
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x8001, -(2 ** -24)],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ])('0x%s', (bits, value) => {
    expect(fp16BitsToFloat(bits)).toBe(value);
  });

  it('keeps the sign of zero and makes NaN of NaN patterns, payload kept', () => {
    expect(Object.is(fp16BitsToFloat(0x8000), -0)).toBe(true);
    expect(fp16BitsToFloat(0x7e00)).toBeNaN();
    expect(fp16BitsToFloat(0xfe01)).toBeNaN();
    const nan = fp16BytesToFloat32(u16Bytes([0x7e01]));
    expect(new Uint32Array(nan.buffer)[0]).toBe(0x7fc02000);
  });

  it('is exact for all 65536 bit patterns', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const got = fp16BytesToFloat32(new Uint8Array(all.buffer));
    for (let h = 0; h < 65536; h++) {
      const want = fp16Reference(h);
      if (Number.isNaN(want)) expect(got[h]).toBeNaN();
      else if (!Object.is(got[h], want)) throw new Error(`0x${h.toString(16)}: got ${got[h]}, want ${want}`);
      expect(fp16BitsToFloat(h) === got[h] || Number.isNaN(got[h])).toBe(true);
    }
  });
});

describe('bf16 -> fp32', () => {
  it.each([
    [0x3f80, 1],
    [0xc000, -2],
    [0x3eaa, 0.33203125],
    [0x7f7f, 3.3895313892515355e38], // largest finite
    [0x0080, 2 ** -126], // smallest normal
    [0x0001, 2 ** -133], // smallest subnormal
    [0x7f80, Infinity],
    [0xff80, -Infinity],
  ])('0x%s', (bits, value) => {
    expect(bf16BitsToFloat(bits)).toBe(value);
  });

  it('is the top half of the fp32 bit pattern for every input', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const got = bf16BytesToFloat32(new Uint8Array(all.buffer));
    const bits = new Uint32Array(got.buffer);
    for (let b = 0; b < 65536; b++) if (bits[b] !== (b << 16) >>> 0) throw new Error(`0x${b.toString(16)}`);
    expect(Object.is(got[0x8000], -0)).toBe(true);
    expect(got[0x7fc0]).toBeNaN();
  });

  it('round-trips values representable in bf16', () => {
    for (const x of [1.5, -0.15625, 1024, 2 ** -70]) {
      const top = f32Bits(x) >>> 16;
      expect(f32Bits(x) & 0xffff).toBe(0);
      expect(bf16BitsToFloat(top)).toBe(x);
    }
  });
});

describe('SafetensorsFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'st-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const write = async (name: string, bytes: Uint8Array) => {
    const file = path.join(dir, name);
    await writeFile(file, bytes);
    return file;
  };

  const tensors = () => ({
    a: { dtype: 'F32', shape: [2, 3], bytes: f32Bytes([1, 2, 3, 4, 5, -6.5]) },
    h: { dtype: 'F16', shape: [3], bytes: u16Bytes([0x3c00, 0xc000, 0x0001]) },
    b: { dtype: 'BF16', shape: [2], bytes: u16Bytes([0x3f80, 0x3eaa]) },
    i: { dtype: 'I64', shape: [1], bytes: new Uint8Array(8) },
  });

  it('reads F32, F16 and BF16 tensors with their shapes, also at unaligned offsets', async () => {
    for (const align of [8, 1, 3]) {
      const file = await write(
        `ok-${align}.safetensors`,
        safetensorsBytes(tensors(), { align, metadata: { format: 'pt' } }),
      );
      const f = await SafetensorsFile.open(file);
      try {
        expect(f.metadata).toEqual({ format: 'pt' });
        const a = await f.read('a');
        expect(a.shape).toEqual([2, 3]);
        expect(a.dtype).toBe('F32');
        expect([...a.data]).toEqual([1, 2, 3, 4, 5, -6.5]);
        expect([...(await f.read('h')).data]).toEqual([1, -2, 2 ** -24]);
        expect([...(await f.read('b')).data]).toEqual([1, 0.33203125]);
      } finally {
        await f.close();
      }
    }
  });

  it('refuses unsupported dtypes and missing tensors with ModelLoadError', async () => {
    const f = await SafetensorsFile.open(await write('dtype.safetensors', safetensorsBytes(tensors())));
    try {
      await expect(f.read('i')).rejects.toThrow(/I64 is not supported/);
      await expect(f.read('nope')).rejects.toBeInstanceOf(ModelLoadError);
      await expect(f.read('nope')).rejects.toThrow(/missing tensor 'nope'/);
    } finally {
      await f.close();
    }
  });

  it('detects a truncated data section', async () => {
    const full = safetensorsBytes(tensors());
    const file = await write('trunc.safetensors', full.subarray(0, full.length - 3));
    await expect(SafetensorsFile.open(file)).rejects.toBeInstanceOf(ModelLoadError);
    await expect(SafetensorsFile.open(file)).rejects.toThrow(/truncated/);
  });

  it('detects a truncated header and a too-short file', async () => {
    const full = safetensorsBytes(tensors());
    await expect(SafetensorsFile.open(await write('h.safetensors', full.subarray(0, 20)))).rejects.toThrow(
      /truncated/,
    );
    await expect(SafetensorsFile.open(await write('s.safetensors', full.subarray(0, 5)))).rejects.toThrow(
      /truncated/,
    );
    await expect(
      SafetensorsFile.open(await write('e.safetensors', new Uint8Array(0))),
    ).rejects.toBeInstanceOf(ModelLoadError);
  });

  it('rejects a bad header', async () => {
    const bad = (json: string) => {
      const h = Buffer.from(json);
      const out = new Uint8Array(8 + h.length + 16);
      new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
      out.set(h, 8);
      return out;
    };
    const cases: [string, RegExp][] = [
      ['{not json', /not valid JSON/],
      ['[1,2]', /not a JSON object/],
      ['{"x":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}', /unknown dtype/],
      ['{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', /needs 8/],
      ['{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', /data_offsets/],
      ['{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', /shape/],
      ['{"x":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}', /truncated/],
    ];
    for (const [i, [json, re]] of cases.entries()) {
      const p = SafetensorsFile.open(await write(`bad${i}.safetensors`, bad(json)));
      await expect(p).rejects.toBeInstanceOf(ModelLoadError);
      await expect(SafetensorsFile.open(path.join(dir, `bad${i}.safetensors`))).rejects.toThrow(re);
    }
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
    await expect(SafetensorsFile.open(await write('huge.safetensors', huge))).rejects.toThrow(/implausible/);
  });

  it('opens a sharded checkpoint through its index and reports shard problems', async () => {
    const sdir = await mkdtemp(path.join(dir, 'sharded-'));
    await writeFile(path.join(sdir, 's1.safetensors'), safetensorsBytes({ a: tensors().a }));
    await writeFile(path.join(sdir, 's2.safetensors'), safetensorsBytes({ b: tensors().b }));
    const index = { metadata: {}, weight_map: { a: 's1.safetensors', b: 's2.safetensors' } };
    await writeFile(path.join(sdir, 'model.safetensors.index.json'), JSON.stringify(index));
    const ck = await SafetensorsCheckpoint.open(sdir);
    try {
      expect(ck.names().sort()).toEqual(['a', 'b']);
      expect([...(await ck.read('b')).data]).toEqual([1, 0.33203125]);
      await expect(ck.read('c')).rejects.toThrow(/missing tensor 'c'/);
    } finally {
      await ck.close();
    }
    index.weight_map.b = 's1.safetensors';
    await writeFile(path.join(sdir, 'model.safetensors.index.json'), JSON.stringify(index));
    await expect(SafetensorsCheckpoint.open(sdir)).rejects.toThrow(/lacks it/);
    (index.weight_map as Record<string, string>).b = 's3.safetensors';
    await writeFile(path.join(sdir, 'model.safetensors.index.json'), JSON.stringify(index));
    await expect(SafetensorsCheckpoint.open(sdir)).rejects.toBeInstanceOf(ModelLoadError);
    const empty = await mkdtemp(path.join(dir, 'empty-'));
    await expect(SafetensorsCheckpoint.open(empty)).rejects.toThrow(/no model.safetensors/);
  });

  it('reads the transformers-written shards of the llama-gqa fixture', async () => {
    const ck = await SafetensorsCheckpoint.open(path.join(HF_FIXTURES_DIR, 'llama-gqa'));
    try {
      expect(ck.names()).toHaveLength(21);
      const e = await ck.read('model.embed_tokens.weight');
      expect(e.shape).toEqual([320, 64]);
      expect(e.data.every(Number.isFinite)).toBe(true);
    } finally {
      await ck.close();
    }
  });
});
