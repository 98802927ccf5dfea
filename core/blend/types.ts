import type { StoredKvLayer } from '../kv/stored.js';
import type { DeviceChunk, DeviationMetric } from '../model/device/index.js';

/** Public types of the CacheBlend layer: modes, options, chunk cache sources, results. */

export type BlendMode = 'full' | 'prefix' | 'reuse' | 'blend';
export const BLEND_MODES: readonly BlendMode[] = ['full', 'prefix', 'reuse', 'blend'];

/** What "deviation" between a token's fresh and cached entry means (declared with the graphs that compute it). */
export type { DeviationMetric };
export const DEVIATION_METRICS: readonly DeviationMetric[] = ['k', 'v', 'kv'];

/**
 * How blend chooses the context tokens it recomputes from the check layer on (selection.ts):
 * - `deviation`: CacheBlend's; the tokens whose fresh K/V (`metric`) deviate most from the cached rows.
 * - `question`: the tokens the question attends to: its queries against the context's fresh keys at the
 *   check layer, attention weight per context token summed over heads and question tokens.
 * - `combined`: half of the budget by question attention, the rest by deviation.
 * - `fused`: one ranking fused from three (reciprocal rank fusion, k = FUSION_K): the question's attention
 *   at the check layer, the lookahead's attention (below), and deviation. It measures both attentions.
 */
export type SelectionStrategy = 'deviation' | 'question' | 'combined' | 'fused';
export const SELECTION_STRATEGIES: readonly SelectionStrategy[] = [
  'deviation',
  'question',
  'combined',
  'fused',
];

/**
 * Where the question's attention to the context is measured (question and combined selections):
 * - `check`: its queries against the context's fresh keys at the check layer, every question token.
 * - `lookahead` (default): a pass of the question alone through the layers from the check layer on over
 *   the cache as it stands before selection (every token's fresh rows at the check layer, the stored
 *   rows above); its last token's attention summed over those layers. It
 *   reads every layer's chunk rows before selecting (no overlap of loading with compute), and costs
 *   the question's tokens once more through those layers.
 */
export type AttentionSource = 'check' | 'lookahead';
export const ATTENTION_SOURCES: readonly AttentionSource[] = ['check', 'lookahead'];
/** The attention a selection asks the check layer for: one source, or both (`fused`). */
export type AttentionRequest = AttentionSource | 'both';

export interface BlendOptions {
  mode: BlendMode;
  /** Fraction of context tokens recomputed from the check layer on (default 0.15). */
  ratio?: number;
  /** Layer at which deviations are measured and tokens selected (default 1). */
  checkLayer?: number;
  metric?: DeviationMetric;
  /** How the check layer's tokens are chosen (default DEFAULT_SELECTION). */
  selection?: SelectionStrategy;
  /** Where question attention is measured (default DEFAULT_ATTENTION). */
  attention?: AttentionSource;
  /**
   * Attention sinks: the first `sinkTokens` tokens of every chunk are always recomputed (default 0). They
   * come out of the same budget: ratio × context tokens bounds the selection with or without them.
   */
  sinkTokens?: number;
  /**
   * Gradual filtering (the paper's §4.3): ratios for the check layer and the layers after it, each a subset
   * of the previous layer's selection (the check layer's chosen by `selection`, later ones by that layer's
   * fresh-vs-cached deviation). The last value
   * holds for the remaining layers. Overrides `ratio`.
   */
  gradualRatios?: number[];
  /** The loading controller: pick ratio = max(r_load, minRatio) from the store's speed (see controller.ts). */
  controller?: { minRatio: number; layerLoadMs: number; tokenLayerMs: number };
  /**
   * Blend: before each layer from the check layer on, move the stored context rows that are not
   * recomputed by the mean fresh-minus-stored difference the recomputed ones measure (core/blend/
   * stale-shift.ts says why; the device engine does it in its selective runs). Default: true for the
   * question-aware selections, false for deviation (as CacheBlend).
   */
  shiftStored?: boolean;
  /**
   * Analysis hook (benchmarks, never the service): sees, and may change, the deviations of the candidate
   * context rows (prompt indices) at each selecting layer before the top-k, e.g. to force a row in (at the
   * check layer, the scores `selection` ranks: question attention for `question`).
   */
  adjustDeviations?: (layer: number, rows: Int32Array, deviations: Float64Array) => void;
}

/** One chunk's precomputed cache, readable layer by layer (a store may fetch each layer as a byte range). */
export interface ChunkKvSource {
  /** The chunk's token ids (without BOS). */
  readonly tokenIds: readonly number[];
  /** Layer l's K and V, [tokens, kvHeads, headDim], keys rotated at positions 1..tokens. */
  layer(l: number): Promise<{ k: Float32Array; v: Float32Array }>;
  /**
   * Layer l as stored (fp16 bits, int8 with scales, …), never widened on the host: what a device engine
   * uploads. Absent: the device path uploads `layer(l)`'s fp32 values.
   */
  storedLayer?(l: number): Promise<StoredKvLayer>;
  /** The chunk's cache already on the engine's GPU (a GPU-tier hit): nothing to read or upload. */
  readonly device?: DeviceChunk;
  /** Offer a fresh upload to a GPU tier, which keeps its own reference (core/cache/device-tier.ts). */
  keepOnDevice?(chunk: DeviceChunk): void;
}

export interface BlendTimings {
  /** Time until the first token's logits, everything included. */
  ttftMs: number;
  /** Time spent waiting for chunk caches that were not ready when a layer needed them. */
  loadWaitMs: number;
  /** Time in onnxruntime and the blend's own arithmetic. */
  computeMs: number;
  /** Device-resident engines: wall time of each step (a step ends when its host output arrives). */
  steps?: Record<string, number>;
  /** Device-resident engines: bytes of stored chunk layers uploaded to the GPU (0 for GPU-tier hits). */
  uploadedBytes?: number;
}

export interface BlendPrefill {
  mode: BlendMode;
  /** Tokens in the prompt: BOS + prefix + chunks + suffix (question). */
  promptTokens: number;
  /** Tokens of the template's prefix (a cached system prompt; 0 without one). */
  prefixTokens: number;
  /** Tokens of the chunks (BOS, the prefix and the suffix excluded). */
  contextTokens: number;
  /** Context tokens recomputed past the check layer (blend), or prefilled (full/prefix). */
  recomputedTokens: number;
  /** Ratio actually used (after the loading controller, if any). */
  ratio: number;
  /** Logits of the last prompt position. */
  firstTokenLogits: Float32Array;
  timings: BlendTimings;
  /**
   * Blend only: for each layer from the check layer on, the prompt indices (row 0 is BOS) of the context
   * tokens recomputed there, ascending. Kept because the selection already exists; used to analyse misses.
   */
  selected?: Int32Array[];
  /** Blend only: the check layer used (the one asked for, else the default, or the model's last layer). */
  checkLayer?: number;
}
