import type ort from 'onnxruntime-node';
import { DeviceChunk, DeviceKvCache, type DeviceLayers, type DeviceRunner } from '../model/device/index.js';
import { DeviceBlendRuns, type AssemblePart } from './device-runs.js';
import type { PrefillSteps } from './prefill-steps.js';
import type { CheckScores } from './selection.js';
import type { PromptLayout } from './steps.js';
import { StoredLayerReader } from './stored-layers.js';
import { SHIFT_PRIOR_TOKENS } from './stale-shift.js';
import type { AttentionRequest, ChunkKvSource, DeviationMetric } from './types.js';

/**
 * Layers a loading blend assembles and recomputes per run: the next group's bytes are read and uploaded
 * while the GPU recomputes the group before (the paper's §5 pipeline). With every chunk on the device,
 * the selective layers run in one call instead.
 */
let pipelineLayers = 4;

/** Benchmarks only: the group size of the device pipeline. */
export function setDevicePipelineLayers(n: number): void {
  pipelineLayers = Math.max(1, Math.floor(n));
}

/** One request's chunks as the device path reads them: sources, their offsets, and a reader of the rest. */
interface ChunkSet {
  sources: readonly ChunkKvSource[];
  offsets: readonly number[];
  reader: StoredLayerReader;
}

/**
 * The prefill steps with caches and hidden states on the GPU (see PrefillSteps). Chunk layers reach the
 * device in their stored form (fp16 bits, int8 with scales), one group of layers per run, and are widened,
 * dequantized, rotated and assembled there; a GPU-tier hit uploads nothing. A blend reads and uploads
 * layer group g + 1 while the GPU recomputes group g. Only the deviations and the last logits come back.
 */
export class DevicePrefillSteps implements PrefillSteps {
  readonly cache = new DeviceKvCache();
  /**
   * Wall time per step. Uploads and assembly return before the GPU finishes them, so their GPU time shows
   * in the next step that waits for a host output (the deviations, the logits).
   */
  readonly stepMs: Record<string, number> = {};
  /** Bytes of stored chunk layers uploaded to the device by this request. */
  uploadedBytes = 0;
  private readers: StoredLayerReader[] = [];
  private chunks: ChunkSet | null = null;
  /** Layers [check, L): the assembled rows, replaced by the blended ones as layers run (by layer). */
  private upper = new Map<number, { k: ort.Tensor; v: ort.Tensor }>();
  /** Recomputed caches of layers [0, check); BOS's own rows (not disposed) when there is no prefix. */
  private lower: DeviceLayers = { k: [], v: [] };
  private lowerOwned = false;
  /** Per source, its layers uploaded by this request, kept for its GPU tier (by layer). */
  private kept = new Map<ChunkKvSource, { k: ort.Tensor[]; v: ort.Tensor[] }>();
  private check = 0;
  private hidden: ort.Tensor | null = null;
  private hiddenRows: Int32Array = new Int32Array(0);
  /** Active prompt indices: context tokens (ascending), then the question. */
  private active: Int32Array = new Int32Array(0);
  private contextCount = 0;
  private logits: Float32Array | null = null;
  private readonly runs: DeviceBlendRuns;

  /** `shiftStored`: as on the host (HostPrefillSteps), each selective layer shifts the stored rows that stay. */
  constructor(
    private readonly runner: DeviceRunner,
    private readonly layout: PromptLayout,
    private readonly shiftStored = false,
  ) {
    this.runs = new DeviceBlendRuns(runner);
  }

  get activeContext(): Int32Array {
    return this.active.subarray(0, this.contextCount);
  }

  get waitedMs(): number {
    return this.readers.reduce((a, r) => a + r.waitedMs, 0);
  }

  private chunkSet(sources: readonly ChunkKvSource[], offsets: readonly number[]): ChunkSet {
    const reader = new StoredLayerReader(
      sources.filter((c) => !c.device),
      this.runner.config.numLayers,
    );
    this.readers.push(reader);
    return { sources, offsets, reader };
  }

  private async timed<T>(step: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.stepMs[step] = (this.stepMs[step] ?? 0) + performance.now() - t0;
    }
  }

  /** Layers [from, from + count) of the prompt's cache from `set`, in one run (DeviceBlendRuns.assemble). */
  private async assemble(set: ChunkSet, from: number, count: number, questionRows: number) {
    const host = set.sources.some((c) => !c.device);
    const read = host ? await this.timed('read', () => set.reader.take(from, count)) : [];
    let h = 0;
    const parts: AssemblePart[] = set.sources.map((c) => {
      const tokens = c.tokenIds.length;
      if (c.device) return { device: c.device, tokens };
      const at = h++;
      return { stored: read.map((layer) => layer[at]), tokens };
    });
    const keep = set.sources.some((c) => !c.device && c.keepOnDevice);
    const out = await this.timed('upload+assemble', () =>
      this.runs.assemble(parts, set.offsets, from, count, questionRows, keep),
    );
    this.uploadedBytes += out.uploadedBytes;
    out.kept.forEach((layers, i) => {
      if (!layers) return;
      const src = set.sources[i];
      if (!src.keepOnDevice) return void [...layers.k, ...layers.v].forEach((t) => t.dispose());
      const kept = this.kept.get(src) ?? { k: [], v: [] };
      layers.k.forEach((t, j) => (kept.k[from + j] = t));
      layers.v.forEach((t, j) => (kept.v[from + j] = t));
      this.kept.set(src, kept);
    });
    return out;
  }

  /** Layers [from, to) of the blend's chunk set into `upper`, unless there already. */
  private async ensureUpper(from: number, to: number): Promise<void> {
    const questionRows = this.layout.promptIds.length - this.layout.contextEnd;
    for (let l = from; l < to; l++) {
      if (this.upper.has(l)) continue;
      let end = l + 1;
      while (end < to && !this.upper.has(end)) end++;
      const out = await this.assemble(this.chunks!, l, end - l, questionRows);
      for (let j = 0; j < end - l; j++) this.upper.set(l + j, { k: out.k[j], v: out.v[j] });
      l = end - 1;
    }
  }

  async reuseChunks(
    sources: readonly ChunkKvSource[],
    offsets: readonly number[],
    end: number,
  ): Promise<void> {
    const L = this.runner.config.numLayers;
    const { k, v } = await this.assemble(this.chunkSet(sources, offsets), 0, L, 0);
    this.cache.replace(k, v, end);
    this.offerToTiers();
  }

  /**
   * BOS's and the prefix's rows below the check layer (exact: read, never recomputed), and the chunks'
   * rows of the check layer; later layers are read as the blend reaches them (recomputeSelected).
   */
  async prepareBlend(
    prefix: ChunkKvSource | null,
    chunks: readonly ChunkKvSource[],
    check: number,
  ): Promise<void> {
    this.check = check;
    const { offsets } = this.layout;
    this.chunks = this.chunkSet(prefix ? [prefix, ...chunks] : chunks, prefix ? [1, ...offsets] : offsets);
    this.chunks.reader.readAhead(check);
    if (prefix && check > 0) {
      const { k, v } = await this.assemble(this.chunkSet([prefix], [1]), 0, check, 0);
      this.lower = { k, v };
      this.lowerOwned = true;
    } else {
      const bos = (await this.runner.bosRows()).rows;
      this.lower = { k: bos.k.slice(0, check), v: bos.v.slice(0, check) };
    }
    await this.ensureUpper(check, check + 1);
  }

  /**
   * The front run (layers [0, check) for every token) and the check layer's scores. With an attention
   * request the check layer's rows become every token's fresh rows, as on the host, and the question's
   * attention comes from the front run (`check`) and/or the lookahead (a run of the question alone).
   */
  async recomputeAll(
    check: number,
    metric: DeviationMetric,
    attention: AttentionRequest | null,
  ): Promise<CheckScores> {
    const { contextStart, contextEnd, positions } = this.layout;
    const cached = this.upper.get(check)!;
    const front = await this.timed('recomputeAll+score', () =>
      this.runs.blendFront(this.layout, cached, this.lower, check, metric, attention !== null),
    );
    if (this.lowerOwned) for (const t of [...this.lower.k, ...this.lower.v]) t.dispose();
    this.lower = { k: front.k, v: front.v };
    this.lowerOwned = true;
    this.setHidden(front.hidden, positions.subarray(contextStart));
    this.active = positions.subarray(contextStart);
    this.contextCount = contextEnd - contextStart;
    const deviation = Float64Array.from(front.dev);
    if (!attention) return { deviation, attention: null };
    cached.k.dispose();
    cached.v.dispose();
    this.upper.set(check, front.check!);
    const context = (rows: Float32Array) => Float64Array.from(rows.subarray(contextStart, contextEnd));
    const scores: CheckScores = { deviation, attention: context(front.attn!) };
    if (attention === 'check') return scores;
    const lookahead = context(await this.lookahead(check));
    if (attention === 'both') scores.lookahead = lookahead;
    else scores.attention = lookahead;
    return scores;
  }

  /**
   * The lookahead (host: lookaheadAttention in steps.ts): the question alone through layers [check, L)
   * over the cache before selection, in the same groups as the selective layers, so the layers it needs
   * are read and uploaded while it runs. Returns the last question token's attention to every row.
   */
  private async lookahead(check: number): Promise<Float32Array> {
    const { contextEnd, positions, promptIds } = this.layout;
    const L = this.runner.config.numLayers;
    const question = positions.subarray(contextEnd);
    const loading = this.chunks!.sources.some((c) => !c.device);
    const step = loading ? pipelineLayers : L - check;
    let hidden = this.hidden!;
    let rows = Array.from(question, (_, i) => this.contextCount + i);
    const look = new Float32Array(promptIds.length);
    for (let l = check; l < L; l += step) {
      const end = Math.min(l + step, L);
      await this.ensureUpper(l, end);
      const layers = { k: [] as ort.Tensor[], v: [] as ort.Tensor[] };
      for (let j = l; j < end; j++) {
        layers.k.push(this.upper.get(j)!.k);
        layers.v.push(this.upper.get(j)!.v);
      }
      const input = { hidden, rows, active: question, promptTokens: promptIds.length };
      const out = await this.timed('lookahead', () => this.runs.blendLookahead(input, layers, l, end));
      for (let j = l; j < end; j++) {
        this.upper.get(j)!.k.dispose();
        this.upper.get(j)!.v.dispose();
        this.upper.set(j, { k: out.k[j - l], v: out.v[j - l] });
      }
      out.look.forEach((x, i) => (look[i] += x));
      if (hidden !== this.hidden) hidden.dispose();
      if (out.hidden) hidden = out.hidden;
      rows = Array.from(question, (_, i) => i);
    }
    return look;
  }

  keep(indices: readonly number[]): void {
    const { contextEnd, positions } = this.layout;
    const kept = Int32Array.from(indices, (i) => this.active[i]);
    const question = positions.subarray(contextEnd);
    this.active = new Int32Array(kept.length + question.length);
    this.active.set(kept);
    this.active.set(question, kept.length);
    this.contextCount = kept.length;
  }

  /**
   * Layers [from, to) for the active tokens, in groups: with every chunk on the device or every layer
   * already assembled, one run; while chunks load, `pipelineLayers` at a time, each group's layers read and uploaded while the GPU
   * recomputes the group before.
   */
  async recomputeSelected(
    from: number,
    to: number,
    metric: DeviationMetric | null,
  ): Promise<Float64Array | null> {
    const L = this.runner.config.numLayers;
    // Loading, unless every layer needed is assembled already (after a lookahead).
    const needed = Array.from({ length: Math.min(to + 1, L) - from }, (_, i) => from + i);
    const loading = this.chunks!.sources.some((c) => !c.device) && !needed.every((l) => this.upper.has(l));
    const step = loading ? pipelineLayers : to - from;
    let dev: Float64Array | null = null;
    for (let l = from; l < to; l += step) {
      const end = Math.min(l + step, to);
      const scoreAt = metric && end === to && to < L ? to : null;
      await this.ensureUpper(l, scoreAt === null ? end : end + 1);
      dev = await this.selectedRun(l, end, scoreAt === null ? null : metric);
    }
    if (to === L) this.offerToTiers();
    return dev;
  }

  private async selectedRun(
    from: number,
    to: number,
    metric: DeviationMetric | null,
  ): Promise<Float64Array | null> {
    const rowOf = new Map<number, number>();
    this.hiddenRows.forEach((p, r) => rowOf.set(p, r));
    const input = {
      hidden: this.hidden!,
      rows: Array.from(this.active, (p) => rowOf.get(p)!),
      active: this.active,
      promptTokens: this.layout.promptIds.length,
    };
    const layer = (l: number) => this.upper.get(l)!;
    const layers = { k: [] as ort.Tensor[], v: [] as ort.Tensor[] };
    for (let l = from; l < to; l++) {
      layers.k.push(layer(l).k);
      layers.v.push(layer(l).v);
    }
    const score = metric ? { metric, count: this.contextCount, cached: layer(to) } : null;
    const shift = this.shiftStored ? this.shiftInputs() : null;
    const out = await this.timed('recomputeSelected', () =>
      this.runs.blendSelected(input, layers, from, to, score, shift),
    );
    for (let l = from; l < to; l++) {
      layer(l).k.dispose();
      layer(l).v.dispose();
      this.upper.set(l, { k: out.k[l - from], v: out.v[l - from] });
    }
    if (out.hidden) this.setHidden(out.hidden, this.active);
    if (out.logits) this.logits = out.logits;
    return out.dev ? Float64Array.from(out.dev) : null;
  }

  /**
   * Hand each chunk this request uploaded to its GPU tier, once it holds every layer (a blend never
   * reads a chunk's layers below the check layer: those are uploaded now, for the tier alone).
   */
  private offerToTiers(): void {
    const L = this.runner.config.numLayers;
    const missing = [...this.kept.keys()].filter((c) => this.kept.get(c)!.k.filter(Boolean).length < L);
    if (missing.length) {
      const set = this.chunkSet(
        missing,
        missing.map(() => 1),
      );
      const lowest = Math.min(...missing.map((c) => this.kept.get(c)!.k.findIndex(Boolean)));
      this.assemble(set, 0, lowest, 0).then(
        (out) => {
          for (const t of [...out.k, ...out.v]) t.dispose();
          this.offerToTiers();
        },
        () => this.dropKept(), // a tier misses this chunk, nothing more: the answer is already out
      );
      return;
    }
    for (const [src, { k, v }] of this.kept) {
      const bytes = [...k, ...v].reduce((a, t) => a + t.size * this.runner.bytesPerValue, 0);
      const chunk = new DeviceChunk(k, v, src.tokenIds.length, bytes);
      src.keepOnDevice!(chunk);
      chunk.release();
    }
    this.kept.clear();
  }

  private dropKept(): void {
    for (const { k, v } of this.kept.values()) for (const t of [...k, ...v]) t?.dispose();
    this.kept.clear();
  }

  /**
   * The stale shift's weights (host: HostPrefillSteps.shiftStale): the active context tokens from the
   * first inexact row on measure it, each 1 / (n + SHIFT_PRIOR_TOKENS) (the mean, shrunk); the context
   * rows from there on that are not active move.
   */
  private shiftInputs(): { weights: Float32Array; stale: Float32Array } {
    const { contextStart, contextEnd, offsets, promptIds } = this.layout;
    const exact = contextStart !== 1 ? contextStart : (offsets[1] ?? contextEnd);
    const ctx = this.activeContext;
    const weights = new Float32Array(this.active.length);
    const stale = new Float32Array(promptIds.length);
    stale.fill(1, exact, contextEnd);
    let n = 0;
    for (const p of ctx) {
      if (p >= exact) n++;
      stale[p] = 0;
    }
    ctx.forEach((p, i) => (weights[i] = p >= exact ? 1 / (n + SHIFT_PRIOR_TOKENS) : 0));
    return { weights, stale };
  }

  private setHidden(hidden: ort.Tensor, rows: Int32Array): void {
    this.hidden?.dispose();
    this.hidden = hidden;
    this.hiddenRows = rows;
  }

  async finishBlend(): Promise<Float32Array> {
    const L = this.runner.config.numLayers;
    const upper = Array.from({ length: L - this.check }, (_, j) => this.upper.get(this.check + j)!);
    this.cache.replace(
      [...this.lower.k, ...upper.map((u) => u.k)],
      [...this.lower.v, ...upper.map((u) => u.v)],
      this.layout.promptIds.length,
    );
    this.hidden?.dispose();
    this.hidden = null;
    if (!this.logits) throw new Error('blend finished before its last layer ran');
    return this.logits;
  }
}
