/**
 * The per-request plan (core/inference/cost-plan.ts, CostModel in core/blend/controller.ts): a blend whose
 * chunk caches would load slower than a full prefill of the prompt runs in full; the prediction comes
 * from observed rates per tier, the device's upload rate and full prefills, and is withheld until known.
 */
import { describe, expect, it } from 'vitest';
import { CostModel } from '../../core/blend/index.js';
import type { LoadedChunk } from '../../core/cache/tiered-loader.js';
import { kvBytesPerToken } from '../../core/kv/format.js';
import { costPlan } from '../../core/inference/cost-plan.js';
import type { EngineContext } from '../../core/inference/engine-context.js';

const config = { numLayers: 32, numKvHeads: 8, headDim: 128 };
const perToken = kvBytesPerToken('float16', 32, 8, 128);

function context(cost: CostModel, device: boolean): EngineContext {
  return { cost, engine: { config, device: device ? {} : null }, init: { kvDtype: 'float16' } } as never;
}
const chunk = (tier: LoadedChunk['tier'], tokens = 512) =>
  ({ tier, tokenIds: Array<number>(tokens).fill(5) }) as unknown as LoadedChunk;

describe('the cost plan', () => {
  it('predicts nothing until it has observed every rate it needs, and nothing on the CPU', () => {
    const cost = new CostModel();
    const opened = [chunk('store'), chunk('store')];
    expect(costPlan(context(cost, true), opened, 1100)).toBeNull();
    cost.observeLoad(1e6, 1, 'store');
    cost.observeFull(1000, 100);
    expect(costPlan(context(cost, true), opened, 1100)).toBeNull(); // the upload rate is still unknown
    cost.observeUpload(1e6, 1);
    expect(costPlan(context(cost, true), opened, 1100)).not.toBeNull();
    // The host path reads each layer while the one before computes: no plan there.
    expect(costPlan(context(cost, false), opened, 1100)).toBeNull();
  });

  it('runs in full when the caches would load slower than a full prefill, blend otherwise', () => {
    const cost = new CostModel();
    cost.observeFull(2000, 400); // 0.2 ms a token
    cost.observeLoad(1e6, 1, 'store'); // 1 GB/s
    cost.observeUpload(1e7, 1); // 10 GB/s: the read is the slower
    const opened = [chunk('store'), chunk('store'), chunk('store'), chunk('store')];
    const fast = costPlan(context(cost, true), opened, 2081)!;
    expect(fast.chose).toBe('blend');
    expect(fast.predictedLoadMs).toBeCloseTo((4 * 512 * perToken) / 1e6, 1);
    expect(fast.predictedFullMs).toBeCloseTo(416.2, 1);
    const slow = new CostModel();
    slow.observeFull(2000, 400);
    slow.observeLoad(1e5, 1, 'store'); // 0.1 GB/s: 2.7 s for 268 MB
    slow.observeUpload(1e7, 1);
    expect(costPlan(context(slow, true), opened, 2081)!.chose).toBe('full');
  });

  it('counts uploads on a device, pipelined with reads, and nothing for GPU-tier hits', () => {
    const cost = new CostModel();
    cost.observeFull(2000, 400);
    cost.observeLoad(1e7, 1, 'disk'); // 10 GB/s
    cost.observeUpload(1e5, 1); // 0.1 GB/s
    const ctx = context(cost, true);
    expect(costPlan(ctx, [chunk('gpu'), chunk('gpu')], 1100)!).toMatchObject({
      chose: 'blend',
      predictedLoadMs: 0,
    });
    const plan = costPlan(ctx, [chunk('disk'), chunk('lru')], 1100)!;
    expect(plan.predictedLoadMs).toBeCloseTo((2 * 512 * perToken) / 1e5, 0); // the upload, the slower
    expect(plan.chose).toBe('full');
  });
});
