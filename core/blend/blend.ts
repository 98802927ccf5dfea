/**
 * CacheBlend prefill over precomputed chunk caches, and the three baselines. Every mode builds the same
 * prompt `BOS + ids(prefix) + ids(c1) + … + ids(cn) + ids(suffix)` at positions 0…N-1, so modes differ only
 * in what they recompute; each is a short composition of the steps of `PrefillSteps` (prefill-steps.ts),
 * done on the host (host-steps.ts, over the functions in steps.ts) or, for a device-resident engine, on
 * the GPU (device-steps.ts); both run every mode and selection alike.
 *
 * The prefix (a template's system prompt) is a true prefix cache: computed alone as BOS + prefix, its rows
 * sit at their own positions 1…p in every prompt, so every mode reuses them as they are — never rotated,
 * never selected, never recomputed. They are exact: the prefix attends only to BOS and itself.
 */
import { InvalidArgumentError } from '../errors.js';
import type { Engine, SequenceCache } from '../model/engine.js';
import { controllerRatio } from './controller.js';
import { pinDeviceChunks } from './device-pins.js';
import { DevicePrefillSteps } from './device-steps.js';
import { HostPrefillSteps } from './host-steps.js';
import type { PrefillSteps } from './prefill-steps.js';
import {
  attentionRequest,
  needsAttention,
  selectContext,
  selectionBudget,
  sinkIndices,
  topK,
} from './selection.js';
import { layoutPrompt, type PromptLayout } from './steps.js';
import {
  ATTENTION_SOURCES,
  SELECTION_STRATEGIES,
  type BlendMode,
  type BlendOptions,
  type BlendPrefill,
  type ChunkKvSource,
  type SelectionStrategy,
} from './types.js';

export const DEFAULT_RATIO = 0.15;
export const DEFAULT_CHECK_LAYER = 1;

/**
 * The check layer blend uses: the one asked for, else DEFAULT_CHECK_LAYER, or the model's last layer when
 * it has no more (a 1-layer model checks at layer 0; the prefill reports the layer it used).
 */
export function checkLayerFor(o: Pick<BlendOptions, 'checkLayer'>, numLayers: number): number {
  return o.checkLayer ?? Math.max(0, Math.min(DEFAULT_CHECK_LAYER, numLayers - 1));
}
/**
 * The selection blend uses unless told otherwise, with DEFAULT_ATTENTION (the lookahead), on every
 * backend: chosen on generated development sets of both models by its worst case (docs/accuracy.md, "The
 * default selection: the evidence"); a model's calibration may choose another (core/eval/calibrate.ts).
 */
export const DEFAULT_SELECTION: SelectionStrategy = 'combined';

/** The selection of a request that names none, whatever the engine (the host and the device pick alike). */
export function defaultSelection(): SelectionStrategy {
  return DEFAULT_SELECTION;
}
export { DEFAULT_ATTENTION } from './selection.js';
/** Most sink tokens a chunk may ask for: past a handful they are the chunk, not its sinks. */
export const MAX_SINK_TOKENS = 64;

/** Checks options against the model (`numLayers`); every backend runs every selection. */
export function validateBlendOptions(o: BlendOptions, numLayers: number): void {
  if (o.selection !== undefined && !SELECTION_STRATEGIES.includes(o.selection)) {
    throw new InvalidArgumentError(`selection must be one of ${SELECTION_STRATEGIES.join(', ')}`);
  }
  if (o.attention !== undefined && !ATTENTION_SOURCES.includes(o.attention)) {
    throw new InvalidArgumentError(`attention must be one of ${ATTENTION_SOURCES.join(', ')}`);
  }
  if (o.selection === 'fused' && o.attention !== undefined) {
    throw new InvalidArgumentError(
      'attention applies to selections "question" and "combined"; "fused" measures both: leave it unset',
    );
  }
  const sinks = o.sinkTokens ?? 0;
  if (!Number.isInteger(sinks) || sinks < 0 || sinks > MAX_SINK_TOKENS) {
    throw new InvalidArgumentError(`sinkTokens must be an integer in [0, ${MAX_SINK_TOKENS}]`);
  }
  const ratioOk = (r: number) => typeof r === 'number' && r >= 0 && r <= 1;
  if (o.ratio !== undefined && !ratioOk(o.ratio)) throw new InvalidArgumentError('ratio must be in [0, 1]');
  // The check layer is blend's alone: another mode runs on any model, whatever checkLayer says.
  const check = checkLayerFor(o, numLayers);
  if (o.mode === 'blend' && (!Number.isInteger(check) || check < 0 || check >= numLayers)) {
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

/**
 * Whether blend moves the stored rows it keeps by the bias its recomputed rows measure (stale-shift.ts):
 * by default for the question-aware selections, which recompute the rows the question reads; deviation
 * keeps CacheBlend's rows (on generated sets the shift left more of its sets further from full than reuse:
 * docs/accuracy.md).
 */
function shiftsStored(o: BlendOptions): boolean {
  return o.shiftStored ?? (o.mode === 'blend' && needsAttention(o.selection ?? DEFAULT_SELECTION));
}

/** One prefill in progress: the prompt's layout and the cache the mode fills. */
interface PrefillRun {
  engine: Engine;
  prefix: ChunkKvSource | null;
  chunks: readonly ChunkKvSource[];
  layout: PromptLayout;
  /** The steps the mode runs, on the host or on the device; they own the prompt's cache. */
  steps: PrefillSteps;
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
  /** Blend: the check layer used (checkLayerFor). */
  checkLayer?: number;
}

/**
 * Prefill the prompt in the requested mode. Returns a cache holding the whole prompt (ready for decoding;
 * a host cache has room for `extraCapacity` more rows, a device-resident engine's stays on the GPU) and
 * the first token's logits. `questionIds` are the suffix's
 * ids (the question as the template wraps it); `prefix` is the template prefix's cache, if any.
 */
export async function blendPrefill(
  engine: Engine,
  chunks: readonly ChunkKvSource[],
  questionIds: readonly number[],
  opts: BlendOptions,
  extraCapacity = 0,
  prefix: ChunkKvSource | null = null,
): Promise<{ cache: SequenceCache; prefill: BlendPrefill }> {
  validateBlendOptions(opts, engine.config.numLayers);
  if (questionIds.length === 0) throw new InvalidArgumentError('the question has no tokens');
  if (prefix && prefix.tokenIds.length === 0) prefix = null;
  const t0 = performance.now();
  // GPU-tier chunks stay allocated for this prefill whatever the tier does meanwhile.
  const pins = engine.device ? pinDeviceChunks(prefix ? [prefix, ...chunks] : chunks) : null;
  if (pins) [prefix, chunks] = prefix ? [pins.sources[0], pins.sources.slice(1)] : [null, pins.sources];
  const layout = layoutPrompt(engine.config.bosTokenId, chunks, questionIds, prefix);
  const N = layout.promptIds.length;
  const steps: PrefillSteps = engine.device
    ? new DevicePrefillSteps(engine.device, layout, shiftsStored(opts))
    : new HostPrefillSteps(engine, layout, N + extraCapacity, shiftsStored(opts));
  const contextTokens = layout.contextEnd - layout.contextStart;
  const run: PrefillRun = { engine, prefix, chunks, layout, steps, contextTokens, opts };
  const outcome = await MODES[opts.mode](run).finally(() => pins?.release());
  const ttftMs = performance.now() - t0;
  const { firstTokenLogits, recomputedTokens, ratio, loadWaitMs, selected, checkLayer } = outcome;
  return {
    cache: steps.cache,
    prefill: {
      mode: opts.mode,
      promptTokens: N,
      prefixTokens: layout.contextStart - 1,
      contextTokens: run.contextTokens,
      recomputedTokens,
      ratio,
      firstTokenLogits,
      timings: {
        ttftMs,
        loadWaitMs,
        computeMs: ttftMs - loadWaitMs,
        ...(steps.stepMs ? { steps: { ...steps.stepMs } } : {}),
        ...(steps.uploadedBytes !== undefined ? { uploadedBytes: steps.uploadedBytes } : {}),
      },
      ...(selected && { selected }),
      ...(checkLayer !== undefined && { checkLayer }),
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
async function fullPrefill({ engine, steps, layout, contextTokens }: PrefillRun): Promise<ModeOutcome> {
  const firstTokenLogits = await engine.forward(steps.cache, layout.promptIds);
  return { firstTokenLogits, recomputedTokens: contextTokens, ratio: 1, loadWaitMs: 0 };
}

/**
 * Prefix caching: BOS and the longest exactly cached prefix sit where they were precomputed — the template's
 * prefix when there is one (a chunk after it was computed without it, so it is not exact), else the first
 * chunk; prefill everything after.
 */
async function prefixPrefill({ engine, steps, layout, chunks, prefix }: PrefillRun): Promise<ModeOutcome> {
  const reused = prefix ? [prefix] : chunks.slice(0, 1);
  const end = reused.length ? 1 + reused[0].tokenIds.length : 1;
  await steps.reuseChunks(reused, [1], end);
  const firstTokenLogits = await engine.forward(steps.cache, layout.promptIds.slice(end));
  return {
    firstTokenLogits,
    recomputedTokens: layout.contextEnd - Math.max(end, layout.contextStart),
    ratio: 1,
    loadWaitMs: steps.waitedMs,
  };
}

/** The prefix (at its own positions) and every chunk (rotated to its offset) as one set of sources. */
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
  const { engine, steps, layout } = run;
  await steps.reuseChunks(...allSources(run), layout.contextEnd);
  const firstTokenLogits = await engine.forward(steps.cache, layout.promptIds.slice(layout.contextEnd));
  return { firstTokenLogits, recomputedTokens: 0, ratio: 0, loadWaitMs: steps.waitedMs };
}

/** The ratio for this request: the loading controller's when configured, else the fixed one. */
function chosenRatio(opts: BlendOptions, contextTokens: number): number {
  if (opts.controller) return controllerRatio({ ...opts.controller, contextTokens });
  return opts.gradualRatios?.[0] ?? opts.ratio ?? DEFAULT_RATIO;
}

/**
 * CacheBlend. Layers below the check layer are recomputed for every token (their cached rows are never
 * loaded); at the check layer the selection strategy (selection.ts) picks at most ratio × context tokens
 * (chunk sinks included), narrowed at later layers by deviation under gradual filtering; from there on
 * each layer recomputes only them and the question and overwrites their rows. The prefix's rows are
 * exact: read, never recomputed. Decoding continues on the blended cache.
 *
 * Layers run in segments: one layer at a time while gradual ratios still narrow the selection, then the
 * rest in one segment (a device-resident engine runs each segment in one call).
 */
async function selectivePrefill(run: PrefillRun): Promise<ModeOutcome> {
  const { engine, steps, chunks, opts, contextTokens } = run;
  const L = engine.config.numLayers;
  const checkLayer = checkLayerFor(opts, L);
  const metric = opts.metric ?? 'k';
  const strategy = opts.selection ?? defaultSelection();
  const ratio = chosenRatio(opts, contextTokens);
  const ratios = opts.gradualRatios ?? [ratio];
  await steps.prepareBlend(run.prefix, chunks, checkLayer);
  const attention = attentionRequest(strategy, opts.attention);
  const check = await steps.recomputeAll(checkLayer, metric, attention);
  const budget = selectionBudget(ratios[0], contextTokens);
  if (budget < contextTokens) {
    const ranked = strategy === 'question' ? check.attention! : check.deviation;
    opts.adjustDeviations?.(checkLayer, steps.activeContext, ranked);
    const sinks = sinkIndices(
      chunks.map((c) => c.tokenIds.length),
      opts.sinkTokens ?? 0,
    );
    steps.keep(selectContext(strategy, budget, check, sinks));
  }
  const selected: Int32Array[] = []; // context rows recomputed at each layer from the check layer on
  let scores: Float64Array | null = null;
  for (let l = checkLayer; l < L;) {
    const target = selectionBudget(ratios[Math.min(l - checkLayer, ratios.length - 1)], contextTokens);
    if (scores && target < steps.activeContext.length) {
      opts.adjustDeviations?.(l, steps.activeContext, scores);
      steps.keep(topK(scores, target));
    }
    const next = l - checkLayer + 1 < ratios.length ? l + 1 : L;
    scores = await steps.recomputeSelected(l, next, next < L ? metric : null);
    for (; l < next; l++) selected.push(steps.activeContext.slice());
  }
  const firstTokenLogits = await steps.finishBlend();
  return {
    firstTokenLogits,
    recomputedTokens: selected[0].length,
    ratio,
    loadWaitMs: steps.waitedMs,
    selected,
    checkLayer,
  };
}
