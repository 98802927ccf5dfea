/**
 * The GPU tier's references (core/cache/device-tier.ts) on real DeviceChunks (CPU tensors): the tier holds
 * one reference per kept chunk and gives it back on eviction, replacement and clear — a chunk whose last
 * reference is gone has its buffers released (tryRetain false).
 */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { DeviceChunkTier } from '../../core/cache/device-tier.js';
import { DeviceChunk } from '../../core/model/device/index.js';

/** A chunk as an upload leaves it: one reference, the uploader's. */
const chunk = (bytes: number) =>
  new DeviceChunk(
    [new ort.Tensor('float32', new Float32Array(2), [2])],
    [new ort.Tensor('float32', new Float32Array(2), [2])],
    2,
    bytes,
  );

/** Hand a fresh upload to the tier and drop the uploader's reference: only the tier's is left. */
function keep(tier: DeviceChunkTier, key: string, c: DeviceChunk): DeviceChunk {
  tier.put(key, c);
  c.release();
  return c;
}

const alive = (c: DeviceChunk) => {
  if (!c.tryRetain()) return false;
  c.release();
  return true;
};

describe('DeviceChunkTier', () => {
  it('keeps recently used chunks within its bytes and releases the evicted', () => {
    const tier = new DeviceChunkTier(100);
    const a = keep(tier, 'a', chunk(40));
    const b = keep(tier, 'b', chunk(40));
    expect(tier.get('a')).toBe(a); // a is now the most recent
    const c = keep(tier, 'c', chunk(40));
    expect([alive(a), alive(b), alive(c)]).toEqual([true, false, true]);
    expect(tier.bytes).toBe(80);
    expect(tier.get('b')).toBeUndefined();
  });

  it('replacing a key releases the old chunk, also when the new one is too large to keep', () => {
    const tier = new DeviceChunkTier(100);
    const old = keep(tier, 'a', chunk(40));
    const newer = keep(tier, 'a', chunk(50));
    expect([alive(old), alive(newer), tier.bytes]).toEqual([false, true, 50]);
    const huge = chunk(500);
    tier.put('a', huge);
    expect(alive(newer)).toBe(false);
    expect(alive(huge)).toBe(true); // the uploader's reference only: the tier took none
    huge.release();
    expect(alive(huge)).toBe(false);
    expect([tier.size, tier.bytes]).toEqual([0, 0]);
  });

  it('putting the chunk it holds changes nothing; clear releases every chunk', () => {
    const tier = new DeviceChunkTier(100);
    const a = keep(tier, 'a', chunk(10));
    tier.put('a', a);
    const b = keep(tier, 'b', chunk(10));
    expect(alive(a)).toBe(true);
    tier.clear();
    expect([alive(a), alive(b), tier.size, tier.bytes]).toEqual([false, false, 0, 0]);
  });

  it('keeps chunks that queries come back to through a burst of chunks seen once', () => {
    const tier = new DeviceChunkTier(1000);
    const hot = Array.from({ length: 5 }, (_, i) => keep(tier, `hot${i}`, chunk(100)));
    hot.forEach((_, i) => tier.get(`hot${i}`)); // used again: protected
    const burst = Array.from({ length: 50 }, (_, i) => keep(tier, `new${i}`, chunk(100)));
    expect(hot.map(alive)).toEqual(hot.map(() => true));
    hot.forEach((c, i) => expect(tier.get(`hot${i}`)).toBe(c));
    expect(burst.filter(alive).length).toBe(5); // the rest of the bytes cycle through the burst
    expect(tier.bytes).toBe(1000);
  });

  it('lets protected chunks fill at most their share; the rest go back on probation', () => {
    const tier = new DeviceChunkTier(1000);
    const all = Array.from({ length: 10 }, (_, i) => keep(tier, `c${i}`, chunk(100)));
    all.forEach((_, i) => tier.get(`c${i}`)); // all used again; only 800 bytes can be protected
    keep(tier, 'fresh', chunk(100)); // evicts from probation: the least recently used demoted chunk
    expect(all.map(alive)).toEqual(all.map((_, i) => i !== 0));
  });
});
