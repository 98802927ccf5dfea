/**
 * The host side of device uploads (core/model/device/host-pack.ts): every host chunk's stored rows of a
 * group of layers in one tensor per array kind, in the assemble graph's layout, copied once into memory the
 * packer reuses — never into memory a pack still waiting for its run holds.
 */
import { describe, expect, it } from 'vitest';
import type { StoredKvLayer } from '../../core/kv/stored.js';
import { HostPacker } from '../../core/model/device/host-pack.js';

const KV = 2;
const HD = 4;
/** A chunk layer of `tokens` rows whose every value encodes (chunk, K or V, index). */
const layer = (chunk: number, tokens: number): StoredKvLayer => ({
  dtype: 'float16',
  k: Uint16Array.from({ length: tokens * KV * HD }, (_, i) => chunk * 1000 + i),
  v: Uint16Array.from({ length: tokens * KV * HD }, (_, i) => chunk * 1000 + 500 + i),
});

describe('HostPacker', () => {
  it('lays two layers of two chunks out as [layers, K/V, rows, KV, hd] in prompt order', () => {
    const packer = new HostPacker();
    const a = [layer(1, 2), layer(2, 3)];
    const b = [layer(3, 2), layer(4, 3)];
    const { feeds, bytes, form, release } = packer.pack([a, b], KV, HD);
    release();
    expect(form).toBe('float16');
    expect(feeds.host.dims).toEqual([2, 2, 5, KV, HD]);
    expect(bytes).toBe(2 * 2 * 5 * KV * HD * 2);
    const data = feeds.host.data as Uint16Array;
    const rows = 5 * KV * HD;
    expect([...data.subarray(0, rows)]).toEqual([...a[0].k, ...a[1].k]);
    expect([...data.subarray(rows, 2 * rows)]).toEqual([...a[0].v, ...a[1].v]);
    expect([...data.subarray(3 * rows, 4 * rows)]).toEqual([...b[0].v, ...b[1].v]);
  });

  it('packs int8 values and their scales apart, and widens mixed forms to fp32', () => {
    const packer = new HostPacker();
    const q: StoredKvLayer = {
      dtype: 'int8',
      k: Int8Array.from({ length: KV * HD }, (_, i) => i - 4),
      v: Int8Array.from({ length: KV * HD }, (_, i) => 4 - i),
      kScale: Uint16Array.of(0x3c00, 0x4000),
      vScale: Uint16Array.of(0x3800, 0x3c00),
    };
    const int8 = packer.pack([[q]], KV, HD);
    int8.release();
    expect(int8.feeds.host.dims).toEqual([2 * KV, HD]);
    expect([...(int8.feeds.host_scale.data as Uint16Array)]).toEqual([0x3c00, 0x4000, 0x3800, 0x3c00]);
    const mixed = packer.pack([[q, layer(1, 1)]], KV, HD);
    mixed.release();
    expect(mixed.form).toBe('float32');
    const values = mixed.feeds.host.data as Float32Array;
    expect([...values.subarray(0, 4)]).toEqual([-4, -3, -2, -1]); // q × scale 1
    expect([...values.subarray(4, 8)]).toEqual([0, 2, 4, 6]); // q × scale 2
  });

  it('never hands a pack memory that an earlier pack still holds; reuses it once released', () => {
    const packer = new HostPacker();
    const first = packer.pack([[layer(1, 2)]], KV, HD);
    const second = packer.pack([[layer(2, 2)]], KV, HD);
    const buf = (p: typeof first) => (p.feeds.host.data as Uint16Array).buffer;
    expect(buf(second)).not.toBe(buf(first));
    expect((first.feeds.host.data as Uint16Array)[0]).toBe(1000);
    first.release();
    second.release();
    const third = packer.pack([[layer(3, 2)]], KV, HD);
    expect(buf(third)).toBe(buf(first));
    third.release();
  });
});
