import { describe, expect, it } from 'vitest';
import { ChunkBatcher } from '../../core/inference/chunk-batcher.js';

/** A batch function that records the batches it ran and answers each chunk with its length. */
function recorder() {
  const batches: number[][][] = [];
  const run = async (batch: number[][]) => {
    batches.push(batch);
    return batch.map((ids) => ids.length);
  };
  return { batches, run };
}

describe('ChunkBatcher', () => {
  it('runs chunks asked for together as one batch and answers each with its own result', async () => {
    const r = recorder();
    const b = new ChunkBatcher(r.run, 8, 10);
    const out = await Promise.all([[1], [1, 2], [1, 2, 3]].map((ids) => b.compute(ids)));
    expect(out).toEqual([1, 2, 3]);
    expect(r.batches).toHaveLength(1);
    expect(r.batches[0]).toEqual([[1], [1, 2], [1, 2, 3]]);
  });

  it('never exceeds maxBatch, and a full batch starts without waiting for the window', async () => {
    const r = recorder();
    const b = new ChunkBatcher(r.run, 2, 60_000);
    const out = await Promise.all([[1], [2, 2], [3, 3, 3], [4, 4, 4, 4]].map((ids) => b.compute(ids)));
    expect(out).toEqual([1, 2, 3, 4]);
    expect(r.batches.map((x) => x.length)).toEqual([2, 2]);
  });

  it('a lone chunk runs after the window', async () => {
    const r = recorder();
    const b = new ChunkBatcher(r.run, 64, 5);
    const t0 = performance.now();
    expect(await b.compute([7, 7])).toBe(2);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(4);
    expect(r.batches).toHaveLength(1);
  });

  it('a failing batch rejects every chunk in it, and later batches still run', async () => {
    let calls = 0;
    const b = new ChunkBatcher(
      async (batch: number[][]) => {
        if (calls++ === 0) throw new Error('device lost');
        return batch.map(() => 'ok');
      },
      2,
      5,
    );
    const first = await Promise.allSettled([b.compute([1]), b.compute([2])]);
    expect(first.map((s) => s.status)).toEqual(['rejected', 'rejected']);
    expect(await b.compute([3])).toBe('ok');
  });
});
