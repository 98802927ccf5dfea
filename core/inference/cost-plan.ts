/**
 * The cheapest plan for a blend job (issue: a cache hit must beat recomputing): from the cost model's
 * observed rates, the time to bring the job's chunk caches in (reads per tier and, on a device engine,
 * uploads; pipelined blend cannot finish before its last layer arrives) against a full prefill of the
 * prompt. A job whose caches would load slower than full prefill runs in full, unless it pinned its mode.
 * Device-resident engines only: on the CPU, computing a layer takes far longer than reading it, and the
 * host path reads each layer while the one before computes.
 */
import type { BlendPrefill } from '../blend/index.js';
import type { LoadedChunk } from '../cache/tiered-loader.js';
import { kvBytesPerToken } from '../kv/format.js';
import type { CostPlan } from '../queue/contracts.js';
import type { EngineContext } from './engine-context.js';

/** The plan for a job's opened caches, or null while the cost model lacks a rate it needs. */
export function costPlan(
  ctx: EngineContext,
  opened: readonly LoadedChunk[],
  promptTokens: number,
): CostPlan | null {
  const { engine, cost, init } = ctx;
  if (!engine.device) return null;
  const { numLayers: L, numKvHeads, headDim } = engine.config;
  const perToken = kvBytesPerToken(init.kvDtype, L, numKvHeads, headDim);
  const read: Record<string, number> = {};
  let upload = 0;
  for (const c of opened) {
    const bytes = perToken * c.tokenIds.length;
    if (c.tier === 'disk' || c.tier === 'store') read[c.tier] = (read[c.tier] ?? 0) + bytes;
    if (c.tier !== 'gpu') upload += bytes;
  }
  const predictedLoadMs = cost.loadMs(read, upload);
  const predictedFullMs = cost.fullMs(promptTokens, L);
  if (predictedLoadMs === null || predictedFullMs === null) return null;
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    chose: predictedLoadMs > predictedFullMs ? 'full' : 'blend',
    predictedLoadMs: round(predictedLoadMs),
    predictedFullMs: round(predictedFullMs),
  };
}

/** What a finished prefill teaches the cost model: full prefill's rate, a device's upload rate. */
export function learnFromPrefill(ctx: EngineContext, prefill: BlendPrefill): void {
  const { timings } = prefill;
  if (prefill.mode === 'full') ctx.cost.observeFull(prefill.promptTokens, timings.ttftMs);
  const upload = timings.steps?.['upload+assemble'];
  if (timings.uploadedBytes && upload) ctx.cost.observeUpload(timings.uploadedBytes, upload);
}
