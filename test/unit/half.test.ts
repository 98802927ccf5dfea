import { describe, expect, it } from 'vitest';
import { bfloat16ArrayToFloat32, float16BitsToFloat32, float32ToFloat16Bits } from '../../core/util/half.js';

describe('half-precision conversions', () => {
  it('encodes known fp16 bit patterns, rounding to nearest even', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, 0x7c00], // rounds up to infinity
      [Infinity, 0x7c00],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway to zero: ties to even
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and next: ties to even (down)
      [1 + 3 * 2 ** -11, 0x3c02], // halfway, odd below: rounds up
      [6.103515625e-5, 0x0400], // smallest normal
    ];
    for (const [v, bits] of cases) expect(float32ToFloat16Bits(v)).toBe(bits);
    expect(float32ToFloat16Bits(NaN) & 0x7c00).toBe(0x7c00);
  });

  it('decodes every finite fp16 value back to the value it encodes from', () => {
    for (let h = 0; h < 0x10000; h++) {
      const exp = (h >> 10) & 0x1f;
      if (exp === 31) continue;
      const f = float16BitsToFloat32(h);
      expect(float32ToFloat16Bits(f)).toBe(h);
    }
  });

  it('decodes bfloat16 as the upper half of fp32', () => {
    expect(Array.from(bfloat16ArrayToFloat32(new Uint16Array([0x3f80, 0xc040, 0x0000])))).toEqual([1, -3, 0]);
  });
});
