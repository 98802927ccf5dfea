import type { SequenceCache } from '../model/engine.js';
import type { CheckScores } from './selection.js';
import type { AttentionRequest, ChunkKvSource, DeviationMetric } from './types.js';

/**
 * The steps every prefill mode is composed of, over one prompt's cache. Two implementations do the same
 * steps: `HostPrefillSteps` keeps the cache on the host and runs one layer graph per call (the CPU, or a
 * GPU provider without device residency); `DevicePrefillSteps` keeps caches and hidden states on the GPU
 * and runs consecutive layers in one call. The modes (blend.ts) are written once, against this.
 *
 * Cache rows follow prompt order: row 0 is BOS, then each chunk's tokens, then the question; a row's RoPE
 * position is its prompt index.
 */
export interface PrefillSteps {
  /** The prompt's cache; after a mode, it holds the whole prompt, ready for decoding. */
  readonly cache: SequenceCache;
  /** Time spent waiting on chunk sources that were not ready when needed. */
  readonly waitedMs: number;
  /** Wall time per step, where the implementation measures it (the device's). */
  readonly stepMs?: Record<string, number>;
  /** Bytes of stored chunk layers uploaded to a device, where the implementation uploads (the device's). */
  readonly uploadedBytes?: number;
  /**
   * Rows [0, end) of every layer: BOS and `sources` at `offsets` (keys rotated from 1…n to the offset), as
   * stored.
   */
  reuseChunks(sources: readonly ChunkKvSource[], offsets: readonly number[], end: number): Promise<void>;
  /**
   * Start a blend: BOS and the prefix's rows (exact, every layer), and the chunks' rows of layers [check, L)
   * (the host reads each layer when it is reached).
   */
  prepareBlend(prefix: ChunkKvSource | null, chunks: readonly ChunkKvSource[], check: number): Promise<void>;
  /**
   * Every prompt token from the first chunk on through layers [0, check) (no chunk row is reused there);
   * all become active. Returns the deviation at layer `check` of every context token and, with an
   * `attention` source, the question's attention to each; then the check layer's rows are every token's
   * fresh rows (both implementations).
   */
  recomputeAll(
    check: number,
    metric: DeviationMetric,
    attention: AttentionRequest | null,
  ): Promise<CheckScores>;
  /** Prompt indices of the active context tokens, ascending; the question tokens are active after them. */
  readonly activeContext: Int32Array;
  /** Keep only these active context tokens (indices into activeContext, ascending) and the question. */
  keep(indices: readonly number[]): void;
  /**
   * The active tokens through layers [from, to) against the mixed cache, their fresh K/V overwriting their
   * rows. With a metric, returns the deviation at layer `to` of the active context tokens (gradual filtering).
   */
  recomputeSelected(from: number, to: number, metric: DeviationMetric | null): Promise<Float64Array | null>;
  /** After the last layer: the cache holds the whole prompt; returns the last prompt token's logits. */
  finishBlend(): Promise<Float32Array>;
}
