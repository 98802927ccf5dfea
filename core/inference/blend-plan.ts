/**
 * The blend options of a job on the inference thread: its fixed ratio, or for `auto` the loading
 * controller's inputs from this thread's cost model. (The prompt comes planned: core/inference/prompt-plan.ts.)
 */
import { DEFAULT_RATIO, type BlendOptions } from '../blend/index.js';
import type { LoadedChunk } from '../cache/tiered-loader.js';
import { kvBytesPerToken } from '../kv/format.js';
import type { AutoRatio, BlendJobData } from '../queue/contracts.js';
import type { EngineContext } from './engine-context.js';

/**
 * The blend options of a job: its fixed ratio, or for `auto` the loading controller's inputs from the cost
 * model — the bytes of one layer of every cache read layer by layer from disk or the store (LRU hits and
 * caches just computed are in memory already).
 */
export function blendOptions(
  ctx: EngineContext,
  job: BlendJobData,
  opened: LoadedChunk[],
): { opts: BlendOptions; autoRatio?: AutoRatio } {
  const { strategy, metric, attention, sinkTokens } = job.selection ?? {};
  const chosen = { selection: strategy, metric, attention, sinkTokens };
  if (job.ratio !== 'auto') return { opts: { mode: job.mode, ratio: job.ratio, ...chosen } };
  const { numKvHeads, headDim } = ctx.engine.config;
  const tokensToLoad = opened
    .filter((c) => c.tier === 'disk' || c.tier === 'store')
    .reduce((a, c) => a + c.tokenIds.length, 0);
  const dtype = ctx.init.kvDtype;
  const estimate = ctx.cost.estimate(kvBytesPerToken(dtype, 1, numKvHeads, headDim) * tokensToLoad);
  const minRatio = ctx.init.minRatio ?? DEFAULT_RATIO;
  const autoRatio = {
    minRatio,
    layerLoadMs: estimate?.layerLoadMs ?? null,
    tokenLayerMs: estimate?.tokenLayerMs ?? null,
  };
  if (!estimate) return { opts: { mode: job.mode, ratio: minRatio, ...chosen }, autoRatio };
  return { opts: { mode: job.mode, controller: { minRatio, ...estimate }, ...chosen }, autoRatio };
}
