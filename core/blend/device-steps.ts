import type ort from 'onnxruntime-node';
import {
  DeviceKvCache,
  type DeviceChunk,
  type DeviceLayers,
  type DeviceRunner,
} from '../model/device/index.js';
import type { PrefillSteps } from './prefill-steps.js';
import type { CheckScores } from './selection.js';
import type { PromptLayout } from './steps.js';
import type { ChunkKvSource, DeviationMetric } from './types.js';

/**
 * The prefill steps with caches and hidden states on the GPU (see PrefillSteps). A request's chunk caches
 * are uploaded once (or found in a GPU tier) and assembled into the prompt's cache on the device; the
 * layers below the check layer and the deviation at it run in one call, and each run of selective layers
 * in one more. Only the deviations and the last logits come back to the host.
 */
export class DevicePrefillSteps implements PrefillSteps {
  readonly cache = new DeviceKvCache();
  waitedMs = 0;
  /**
   * Wall time per step. Uploads and assembly return before the GPU finishes them, so their GPU time shows
   * in the next step that waits for a host output (the deviations, the logits).
   */
  readonly stepMs: Record<string, number> = {};
  /** Caches of layers [check, L): the assembled chunk rows, replaced by the blended ones as layers run. */
  private upper: DeviceLayers = { k: [], v: [] };
  /** Recomputed caches of layers [0, check). */
  private lower: DeviceLayers = { k: [], v: [] };
  private check = 0;
  /** The latest hidden states on the device, and the prompt index each of its rows holds. */
  private hidden: ort.Tensor | null = null;
  private hiddenRows: Int32Array = new Int32Array(0);
  /** Active prompt indices: context tokens (ascending), then the question. */
  private active: Int32Array = new Int32Array(0);
  private contextCount = 0;
  private logits: Float32Array | null = null;

  constructor(
    private readonly runner: DeviceRunner,
    private readonly layout: PromptLayout,
  ) {}

  get activeContext(): Int32Array {
    return this.active.subarray(0, this.contextCount);
  }

  /**
   * Each chunk's cache on the device: a GPU-tier hit as is, otherwise every layer read from its source,
   * uploaded, and offered to the source's GPU tier. The caller releases the returned references.
   */
  private async deviceChunks(chunks: readonly ChunkKvSource[]): Promise<DeviceChunk[]> {
    const L = this.runner.config.numLayers;
    const t0 = performance.now();
    const layers = await Promise.all(
      chunks.map((c) => (c.device ? null : Promise.all(Array.from({ length: L }, (_, l) => c.layer(l))))),
    );
    this.waitedMs += performance.now() - t0;
    const out: DeviceChunk[] = [];
    for (let i = 0; i < chunks.length; i++) {
      const resident = chunks[i].device;
      if (resident) {
        out.push(resident.retain());
        continue;
      }
      const kv = layers[i]!;
      const uploaded = await this.runner.upload(
        kv.map((x) => x.k),
        kv.map((x) => x.v),
        chunks[i].tokenIds.length,
      );
      chunks[i].keepOnDevice?.(uploaded);
      out.push(uploaded);
    }
    return out;
  }

  private async timed<T>(step: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.stepMs[step] = (this.stepMs[step] ?? 0) + performance.now() - t0;
    }
  }

  private async assemble(
    sources: readonly ChunkKvSource[],
    offsets: readonly number[],
    questionRows: number,
  ) {
    const onDevice = await this.timed('load+upload', () => this.deviceChunks(sources));
    try {
      return await this.timed('assemble', () => this.runner.assemble(onDevice, offsets, 0, questionRows));
    } finally {
      for (const c of onDevice) c.release();
    }
  }

  async reuseChunks(
    sources: readonly ChunkKvSource[],
    offsets: readonly number[],
    end: number,
  ): Promise<void> {
    const { k, v } = await this.assemble(sources, offsets, 0);
    this.cache.replace(k, v, end);
  }

  /** Every layer's rows assembled: the front reads BOS's and the prefix's rows below the check layer. */
  async prepareBlend(
    prefix: ChunkKvSource | null,
    chunks: readonly ChunkKvSource[],
    check: number,
  ): Promise<void> {
    this.check = check;
    const { offsets, promptIds, contextEnd } = this.layout;
    const sources = prefix ? [prefix, ...chunks] : [...chunks];
    const all = await this.assemble(
      sources,
      prefix ? [1, ...offsets] : offsets,
      promptIds.length - contextEnd,
    );
    this.lower = { k: all.k.slice(0, check), v: all.v.slice(0, check) };
    this.upper = { k: all.k.slice(check), v: all.v.slice(check) };
  }

  /** Deviation only: the question-aware selections are refused on the device (validateBlendOptions). */
  async recomputeAll(check: number, metric: DeviationMetric): Promise<CheckScores> {
    const { contextStart, contextEnd, positions } = this.layout;
    const front = await this.timed('recomputeAll+score', () =>
      this.runner.blendFront(
        this.layout,
        { k: this.upper.k[0], v: this.upper.v[0] },
        this.lower,
        check,
        metric,
      ),
    );
    for (const t of [...this.lower.k, ...this.lower.v]) t.dispose();
    this.lower = { k: front.k, v: front.v };
    this.setHidden(front.hidden, positions.subarray(contextStart));
    this.active = positions.subarray(contextStart);
    this.contextCount = contextEnd - contextStart;
    return { deviation: Float64Array.from(front.dev), attention: null };
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

  async recomputeSelected(
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
    const at = (l: number) => l - this.check;
    const layers = { k: this.upper.k.slice(at(from), at(to)), v: this.upper.v.slice(at(from), at(to)) };
    const score =
      metric && to < this.runner.config.numLayers
        ? { metric, count: this.contextCount, cached: { k: this.upper.k[at(to)], v: this.upper.v[at(to)] } }
        : null;
    const out = await this.timed('recomputeSelected', () =>
      this.runner.blendSelected(input, layers, from, to, score),
    );
    for (let l = from; l < to; l++) {
      this.upper.k[at(l)].dispose();
      this.upper.v[at(l)].dispose();
      this.upper.k[at(l)] = out.k[l - from];
      this.upper.v[at(l)] = out.v[l - from];
    }
    if (out.hidden) this.setHidden(out.hidden, this.active);
    if (out.logits) this.logits = out.logits;
    return out.dev ? Float64Array.from(out.dev) : null;
  }

  private setHidden(hidden: ort.Tensor, rows: Int32Array): void {
    this.hidden?.dispose();
    this.hidden = hidden;
    this.hiddenRows = rows;
  }

  async finishBlend(): Promise<Float32Array> {
    const N = this.layout.promptIds.length;
    this.cache.replace([...this.lower.k, ...this.upper.k], [...this.lower.v, ...this.upper.v], N);
    this.hidden?.dispose();
    this.hidden = null;
    if (!this.logits) throw new Error('blend finished before its last layer ran');
    return this.logits;
  }
}
