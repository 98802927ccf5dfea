/**
 * CacheBlend prefill over precomputed chunk caches, and the three baselines. Every mode builds the same
 * prompt `BOS + ids(prefix) + ids(c1) + … + ids(cn) + ids(suffix)` at positions 0…N-1, so modes differ only
 * in what they recompute; each is a short composition of the steps in steps.ts.
 *
 * The prefix (a template's system prompt) is a true prefix cache: computed alone as BOS + prefix, its rows
 * sit at their own positions 1…p in every prompt, so every mode reuses them as they are — never rotated,
 * never selected, never recomputed. They are exact: the prefix attends only to BOS and itself.
 */
import { InvalidArgumentError } from '../errors.js';
import type { Engine } from '../model/engine.js';
import type { KvCache } from '../model/kv-cache.js';
import { writeBosRows } from './chunks.js';
import { controllerRatio } from './controller.js';
import {
  ChunkLayerReader,
  layoutPrompt,
  recomputeAllTokens,
  recomputeSelected,
  selectByDeviation,
  type ActiveTokens,
  type PromptLayout,
} from './steps.js';
import type { BlendMode, BlendOptions, BlendPrefill, ChunkKvSource } from './types.js';

export const DEFAULT_RATIO = 0.15;
export const DEFAULT_CHECK_LAYER = 1;

export function validateBlendOptions(o: BlendOptions, numLayers: number): void {
  const ratioOk = (r: number) => typeof r === 'number' && r >= 0 && r <= 1;
  if (o.ratio !== undefined && !ratioOk(o.ratio)) throw new InvalidArgumentError('ratio must be in [0, 1]');
  const check = o.checkLayer ?? DEFAULT_CHECK_LAYER;
  if (!Number.isInteger(check) || check < 0 || check >= numLayers) {
    throw new InvalidArgumentError(`checkLayer must be an integer in [0, ${numLayers - 1}]`);
  }
  if (o.gradualRatios) {
    if (o.gradualRatios.length === 0 || !o.gradualRatios.every(ratioOk)) {
      throw new InvalidArgumentError('gradualRatios must be a non-empty list of ratios in [0, 1]');
    }
    for (let i = 1; i < o.gradualRatios.length; i++) {
      if (o.gradualRatios[i] > o.gradualRatios[i - 1])
        throw new InvalidArgumentError('gradualRatios must not grow');
    }
  }
}

/** One prefill in progress: the prompt's layout and the cache the mode fills. */
interface PrefillRun {
  engine: Engine;
  prefix: ChunkKvSource | null;
  chunks: readonly ChunkKvSource[];
  layout: PromptLayout;
  cache: KvCache;
  contextTokens: number;
  opts: BlendOptions;
}

/** What a mode reports; blendPrefill adds the prompt's sizes and the timings. */
interface ModeOutcome {
  firstTokenLogits: Float32Array;
  recomputedTokens: number;
  ratio: number;
  loadWaitMs: number;
  selected?: Int32Array[];
}

/**
 * Prefill the prompt in the requested mode. Returns a cache holding the whole prompt (ready for decoding,
 * with room for `extraCapacity` more rows) and the first token's logits. `questionIds` are the suffix's
 * ids (the question as the template wraps it); `prefix` is the template prefix's cache, if any.
 */
export async function blendPrefill(
  engine: Engine,
  chunks: readonly ChunkKvSource[],
  questionIds: readonly number[],
  opts: BlendOptions,
  extraCapacity = 0,
  prefix: ChunkKvSource | null = null,
): Promise<{ cache: KvCache; prefill: BlendPrefill }> {
  validateBlendOptions(opts, engine.config.numLayers);
  if (questionIds.length === 0) throw new InvalidArgumentError('the question has no tokens');
  if (prefix && prefix.tokenIds.length === 0) prefix = null;
  const t0 = performance.now();
  const layout = layoutPrompt(engine.config.bosTokenId, chunks, questionIds, prefix);
  const N = layout.promptIds.length;
  const cache = engine.newCache(N + extraCapacity);
  const contextTokens = layout.contextEnd - layout.contextStart;
  const run: PrefillRun = { engine, prefix, chunks, layout, cache, contextTokens, opts };
  const outcome = await MODES[opts.mode](run);
  const ttftMs = performance.now() - t0;
  const { firstTokenLogits, recomputedTokens, ratio, loadWaitMs, selected } = outcome;
  return {
    cache,
    prefill: {
      mode: opts.mode,
      promptTokens: N,
      prefixTokens: layout.contextStart - 1,
      contextTokens: run.contextTokens,
      recomputedTokens,
      ratio,
      firstTokenLogits,
      timings: { ttftMs, loadWaitMs, computeMs: ttftMs - loadWaitMs },
      ...(selected && { selected }),
    },
  };
}

const MODES: Record<BlendMode, (run: PrefillRun) => Promise<ModeOutcome>> = {
  full: fullPrefill,
  prefix: prefixPrefill,
  reuse: reusePrefill,
  blend: selectivePrefill,
};

/** The baseline: prefill the whole prompt. */
async function fullPrefill({ engine, cache, layout, contextTokens }: PrefillRun): Promise<ModeOutcome> {
  const firstTokenLogits = await engine.forward(cache, layout.promptIds);
  return { firstTokenLogits, recomputedTokens: contextTokens, ratio: 1, loadWaitMs: 0 };
}

/**
 * Prefix caching: BOS and the longest exactly cached prefix sit where they were precomputed — the template's
 * prefix when there is one (a chunk after it was computed without it, so it is not exact), else the first
 * chunk; prefill everything after.
 */
async function prefixPrefill({ engine, cache, layout, chunks, prefix }: PrefillRun): Promise<ModeOutcome> {
  const reused = prefix ? [prefix] : chunks.slice(0, 1);
  const end = reused.length ? 1 + reused[0].tokenIds.length : 1;
  cache.reserve(layout.promptIds.length);
  await writeBosRows(engine, cache);
  const reader = new ChunkLayerReader(engine, cache, reused, [1]);
  await reader.fillFrom(0);
  cache.commit(layout.positions.subarray(0, end));
  const firstTokenLogits = await engine.forward(cache, layout.promptIds.slice(end));
  return {
    firstTokenLogits,
    recomputedTokens: layout.contextEnd - Math.max(end, layout.contextStart),
    ratio: 1,
    loadWaitMs: reader.waitedMs,
  };
}

/** The prefix (at its own positions) and every chunk (rotated to its offset) as one reader's sources. */
function allSources({ prefix, chunks, layout }: PrefillRun): [ChunkKvSource[], number[]] {
  return prefix
    ? [
        [prefix, ...chunks],
        [1, ...layout.offsets],
      ]
    : [[...chunks], layout.offsets];
}

/** Every chunk's cache rotated into place as is; only the question is computed. */
async function reusePrefill(run: PrefillRun): Promise<ModeOutcome> {
  const { engine, cache, layout } = run;
  cache.reserve(layout.promptIds.length);
  const reader = new ChunkLayerReader(engine, cache, ...allSources(run));
  reader.prefetch(0);
  await writeBosRows(engine, cache);
  await reader.fillFrom(0);
  cache.commit(layout.positions.subarray(0, layout.contextEnd));
  const firstTokenLogits = await engine.forward(cache, layout.promptIds.slice(layout.contextEnd));
  return { firstTokenLogits, recomputedTokens: 0, ratio: 0, loadWaitMs: reader.waitedMs };
}

/** The ratio for this request: the loading controller's when configured, else the fixed one. */
function chosenRatio(opts: BlendOptions, contextTokens: number): number {
  if (opts.controller) return controllerRatio({ ...opts.controller, contextTokens });
  return opts.gradualRatios?.[0] ?? opts.ratio ?? DEFAULT_RATIO;
}

/**
 * CacheBlend. Layers below the check layer are recomputed for every token (their cached rows are never
 * loaded); from the check layer on, each layer keeps the context tokens whose fresh K/V deviate most from
 * the cached rows (the check layer's selection, narrowed further under gradual filtering) plus the
 * question, recomputes only them and overwrites their rows. Decoding continues on the blended cache.
 */
async function selectivePrefill(run: PrefillRun): Promise<ModeOutcome> {
  const { engine, cache, layout, chunks, opts, contextTokens } = run;
  const L = engine.config.numLayers;
  const D = engine.config.hiddenSize;
  const checkLayer = opts.checkLayer ?? DEFAULT_CHECK_LAYER;
  const ratio = chosenRatio(opts, contextTokens);
  const ratios = opts.gradualRatios ?? [ratio];
  cache.reserve(layout.promptIds.length);
  const reader = new ChunkLayerReader(engine, cache, chunks, layout.offsets);
  reader.prefetch(checkLayer);
  await writeBosRows(engine, cache);
  // The prefix's rows are exact at every layer: read them all, compute none of them.
  const prefixReader = new ChunkLayerReader(engine, cache, run.prefix ? [run.prefix] : [], [1]);
  await prefixReader.fillFrom(0);
  let active: ActiveTokens = {
    indices: layout.positions.subarray(layout.contextStart),
    hidden: engine.embed(layout.promptIds.slice(layout.contextStart)),
  };
  active.hidden = await recomputeAllTokens(engine, cache, layout, active, checkLayer);
  const selected: Int32Array[] = []; // context rows recomputed at each layer from the check layer on
  for (let l = checkLayer; l < L; l++) {
    reader.prefetch(l + 1);
    await reader.fill(l);
    const target = Math.round(ratios[Math.min(l - checkLayer, ratios.length - 1)] * contextTokens);
    active = await selectByDeviation(engine, cache, l, active, layout.contextEnd, target, opts);
    active.hidden = await recomputeSelected(engine, cache, l, active, layout.positions);
    selected.push(active.indices.filter((i) => i < layout.contextEnd));
  }
  cache.commit(layout.positions);
  const firstTokenLogits = await engine.logits(active.hidden.subarray(active.hidden.length - D));
  const recomputedTokens = selected[0].length;
  const loadWaitMs = reader.waitedMs + prefixReader.waitedMs;
  return { firstTokenLogits, recomputedTokens, ratio, loadWaitMs, selected };
}
