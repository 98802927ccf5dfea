import type { Engine } from '../model/engine.js';
import type { KvCache } from '../model/host/kv-cache.js';
import { writeBosRows } from './chunks.js';
import type { PrefillSteps } from './prefill-steps.js';
import { freshContextRows, shiftStaleRows } from './stale-shift.js';
import type { CheckScores } from './selection.js';
import {
  ChunkLayerReader,
  keepActive,
  recomputeAllTokens,
  recomputeSelected,
  scoreActive,
  scoreWithQuestion,
  lookaheadAttention,
  type ActiveTokens,
  type PromptLayout,
} from './steps.js';
import type { AttentionRequest, ChunkKvSource, DeviationMetric } from './types.js';

/** The prefill steps over a host KvCache, one layer graph per call (see PrefillSteps). */
export class HostPrefillSteps implements PrefillSteps {
  readonly cache: KvCache;
  private reader: ChunkLayerReader | null = null;
  private prefixWaitedMs = 0;
  private active: ActiveTokens = { indices: new Int32Array(0), hidden: new Float32Array(0) };
  private contextCount = 0;

  /**
   * `shiftStored`: before each selective layer, move the stored rows that stay by the bias the selected
   * tokens' fresh rows measure (stale-shift.ts).
   */
  constructor(
    private readonly engine: Engine,
    private readonly layout: PromptLayout,
    capacity: number,
    private readonly shiftStored = true,
  ) {
    this.cache = engine.newCache(capacity);
  }

  get waitedMs(): number {
    return (this.reader?.waitedMs ?? 0) + this.prefixWaitedMs;
  }

  get activeContext(): Int32Array {
    return this.active.indices.subarray(0, this.contextCount);
  }

  async reuseChunks(
    sources: readonly ChunkKvSource[],
    offsets: readonly number[],
    end: number,
  ): Promise<void> {
    this.cache.reserve(this.layout.promptIds.length);
    this.reader = new ChunkLayerReader(this.engine, this.cache, sources, offsets);
    this.reader.prefetch(0);
    await writeBosRows(this.engine, this.cache);
    await this.reader.fillFrom(0);
    this.cache.commit(this.layout.positions.subarray(0, end));
  }

  async prepareBlend(
    prefix: ChunkKvSource | null,
    chunks: readonly ChunkKvSource[],
    check: number,
  ): Promise<void> {
    this.cache.reserve(this.layout.promptIds.length);
    this.reader = new ChunkLayerReader(this.engine, this.cache, chunks, this.layout.offsets);
    this.reader.prefetch(check);
    await writeBosRows(this.engine, this.cache);
    // The prefix's rows are exact at every layer: read them all, compute none of them.
    const prefixReader = new ChunkLayerReader(this.engine, this.cache, prefix ? [prefix] : [], [1]);
    await prefixReader.fillFrom(0);
    this.prefixWaitedMs = prefixReader.waitedMs;
  }

  /** Layer l's chunk rows in the cache (read once: see ChunkLayerReader), with layer l+1 requested meanwhile. */
  private async fill(l: number): Promise<void> {
    this.reader!.prefetch(l + 1);
    await this.reader!.fill(l);
  }

  async recomputeAll(
    check: number,
    metric: DeviationMetric,
    attention: AttentionRequest | null,
  ): Promise<CheckScores> {
    const { layout, engine } = this;
    const start = layout.contextStart;
    this.active = {
      indices: layout.positions.subarray(start),
      hidden: engine.embed(layout.promptIds.slice(start)),
    };
    this.contextCount = layout.contextEnd - start;
    this.active.hidden = await recomputeAllTokens(engine, this.cache, layout, this.active, check);
    if (!attention) return { deviation: await this.score(check, metric), attention: null };
    await this.fill(check);
    const scores = await scoreWithQuestion(engine, this.cache, layout, check, this.active, metric);
    if (attention !== 'check') {
      const question = {
        indices: this.active.indices.subarray(this.contextCount),
        hidden: this.active.hidden.subarray(this.contextCount * engine.config.hiddenSize),
      };
      const lookahead = await lookaheadAttention(engine, this.cache, layout, question, check, (l) =>
        this.fill(l),
      );
      if (attention === 'both') scores.lookahead = lookahead;
      else scores.attention = lookahead;
    }
    return scores;
  }

  private async score(layer: number, metric: DeviationMetric): Promise<Float64Array> {
    await this.fill(layer);
    return scoreActive(this.engine, this.cache, layer, this.active, this.contextCount, metric);
  }

  keep(indices: readonly number[]): void {
    this.active = keepActive(this.active, indices, this.contextCount, this.engine.config.hiddenSize);
    this.contextCount = indices.length;
  }

  async recomputeSelected(
    from: number,
    to: number,
    metric: DeviationMetric | null,
  ): Promise<Float64Array | null> {
    for (let l = from; l < to; l++) {
      await this.fill(l);
      if (this.shiftStored) await this.shiftStale(l);
      this.active.hidden = await recomputeSelected(
        this.engine,
        this.cache,
        l,
        this.active,
        this.layout.positions,
      );
    }
    return metric ? this.score(to, metric) : null;
  }

  /** Rows from here on may be shifted: the first chunk's stored rows are full prefill's when it follows BOS. */
  private exactEnd(): number {
    const { layout } = this;
    if (layout.contextStart !== 1) return layout.contextStart;
    return layout.offsets[1] ?? layout.contextEnd;
  }

  /** Shift the stored context rows not selected by the bias the selected ones measure at layer l. */
  private async shiftStale(l: number): Promise<void> {
    const exact = this.exactEnd();
    const ctx = this.activeContext;
    const first = ctx.findIndex((p) => p >= exact);
    if (first < 0) return;
    const fresh = await freshContextRows(this.engine, l, this.active, this.contextCount);
    const row = this.cache.rowSize;
    const active = new Set(ctx);
    const stale: number[] = [];
    for (let p = exact; p < this.layout.contextEnd; p++) if (!active.has(p)) stale.push(p);
    shiftStaleRows(
      this.engine,
      this.cache,
      l,
      { rows: ctx.subarray(first), k: fresh.k.subarray(first * row), v: fresh.v.subarray(first * row) },
      stale,
    );
  }

  async finishBlend(): Promise<Float32Array> {
    this.cache.commit(this.layout.positions);
    const D = this.engine.config.hiddenSize;
    return this.engine.logits(this.active.hidden.subarray(this.active.hidden.length - D));
  }
}
