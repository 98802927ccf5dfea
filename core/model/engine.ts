import ort from 'onnxruntime-node';
import { InvalidArgumentError } from '../errors.js';
import { settingDefault } from '../config/settings.js';
import { inverseFrequencies, ropeTables } from '../kv/rope.js';
import { chooseAttention, DeviceKvCache, DeviceRunner } from './device/index.js';
import type { DeviceDtype, SelectiveAttention } from './device/graphs/index.js';
import { buildHeadGraph, buildKvProjectionGraph, buildLayerGraph } from './host/graphs.js';
import { KvCache } from './host/kv-cache.js';
import { buildMask } from './host/mask.js';
import { checkProviderInstalled, providerUnavailable, type ExecutionProvider } from './host/provider.js';
import { createSession } from './onnx/session.js';
import { concatFloat32 } from '../util/arrays.js';
import { parameterCount } from './random.js';
import type { LoadedModel, ModelConfig } from './types.js';
import type { WeightFormat } from './weights/format.js';
import { EmbeddingTable } from './weights/weight.js';
import { createHash } from 'node:crypto';

export { buildMask, MASKED } from './host/mask.js';
export { CUDA_INSTALL, type ExecutionProvider } from './host/provider.js';

export interface EngineOptions {
  executionProvider?: ExecutionProvider;
  /** onnxruntime intra-op threads; 0 lets onnxruntime choose (all cores). */
  threads?: number;
  /** Benchmark only: layer graphs return the whole concatenated cache instead of the new rows. */
  emitPresent?: boolean;
  /**
   * Longest run of new tokens sent through a layer at once (default 512). Longer prompts are prefilled in
   * blocks: causal attention then skips the upper triangle and the score tensors stay small.
   */
  prefillBlock?: number;
  /**
   * WebGPU only: keep hidden states and KV caches on the GPU between runs (default true). Off, the
   * WebGPU engine runs the per-layer graphs with host copies, like the CPU.
   */
  deviceResident?: boolean;
  /** Precision of activations and KV on the device (default DEVICE_DTYPE's); the CPU computes in fp32. */
  deviceDtype?: DeviceDtype;
  /**
   * Format of the linear layers' weights (default: fp32 on the CPU, the device precision's own on the
   * device): fp16 halves their bytes, q4 (block-wise 4-bit) takes about an eighth of fp32, q8 a quarter.
   */
  weights?: WeightFormat;
  /** Longest run of new tokens per device call (default 4096). */
  deviceBlock?: number;
  /**
   * Attention kernels on the device (causal; blend's selective layers): by default onnxruntime's fused
   * kernels where a check at start finds they agree with the decomposed graphs on this adapter.
   */
  deviceAttention?: 'fused' | 'decomposed';
  deviceSelectiveAttention?: SelectiveAttention;
  /**
   * Greedy tokens a device-resident engine decodes per run, the argmax taken on the GPU (default 8; 1
   * decodes token by token). See decodeGreedy.
   */
  deviceDecodeBurst?: number;
  /** Extra onnxruntime session options (benchmarks: profiling). */
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

/** Greedy tokens a device-resident engine decodes per GPU run unless told otherwise (DEVICE_DECODE_BURST). */
export const DEFAULT_DECODE_BURST = 8;

/** A sequence's KV cache: on the host (CPU, or a GPU engine's host-copy path) or on the device. */
export type SequenceCache = KvCache | DeviceKvCache;

/** Free a cache's GPU buffers now (a host cache is left to the garbage collector). */
export function releaseCache(cache: SequenceCache): void {
  if (cache instanceof DeviceKvCache) cache.dispose();
}

export interface LayerResult {
  hidden: Float32Array; // [T, hidden]
  k: Float32Array; // [T, kvHeads, headDim]
  v: Float32Array;
}

/**
 * The inference engine: one onnxruntime session per decoder layer plus one for the output head, built in
 * process from the loaded weights. Everything above it (prefill, decoding, CacheBlend) is composed from
 * `embed`, `runLayer`, `projectKv` and `logits`, which run any subset of tokens through any layer.
 */
export class Engine {
  readonly config: ModelConfig;
  readonly invFreq: Float64Array;
  /** Sees every layer run's token count and wall time (the loading controller's cost model learns from it). */
  layerObserver: ((tokens: number, ms: number) => void) | null = null;
  /** K/V projection graphs by layer; those that also return queries under -1 - layer. */
  private readonly kvProjSessions = new Map<number, Promise<ort.InferenceSession>>();
  private readonly layers: Promise<ort.InferenceSession>[] = [];
  private head: Promise<ort.InferenceSession> | null = null;
  private embeddings: EmbeddingTable | null = null;
  /**
   * Whose KV this engine's caches hold: the model's fingerprint, marked with the weight format where it
   * changes the caches beyond rounding (q4, q8). fp16 weights share fp32's caches, as fp16 devices always have.
   */
  readonly kvFingerprint: string;

  private constructor(
    readonly model: LoadedModel,
    private readonly sessionOptions: ort.InferenceSession.SessionOptions,
    readonly executionProvider: ExecutionProvider,
    readonly prefillBlock: number,
    private readonly emitPresent: boolean,
    /** Device-resident execution (WebGPU), or null: every run copies its inputs and outputs. */
    readonly device: DeviceRunner | null,
    /** Greedy tokens per device run (see decodeGreedy). */
    readonly decodeBurst = 1,
    /** Format of the linear layers' weights. */
    readonly weightFormat: WeightFormat = 'fp32',
  ) {
    this.config = model.config;
    this.invFreq = inverseFrequencies(model.config);
    this.kvFingerprint =
      weightFormat === 'q4' || weightFormat === 'q8'
        ? createHash('sha256').update(`${model.fingerprint}:weights=${weightFormat}`).digest('hex')
        : model.fingerprint;
  }

  /** The per-layer graph of the host path, created on first use (a device-resident engine rarely needs it). */
  private layerSession(l: number): Promise<ort.InferenceSession> {
    if (!this.layers[l]) {
      const graph = buildLayerGraph(this.config, this.model.weights.layers[l], l, {
        emitPresent: this.emitPresent,
        weights: this.weightFormat,
      });
      this.layers[l] = createSession(graph, this.sessionOptions);
    }
    return this.layers[l];
  }

  private headSession(): Promise<ort.InferenceSession> {
    const { finalNorm, lmHead } = this.model.weights;
    this.head ??= createSession(
      buildHeadGraph(this.config, finalNorm, lmHead, this.weightFormat),
      this.sessionOptions,
    );
    return this.head;
  }

  static async create(model: LoadedModel, opts: EngineOptions = {}): Promise<Engine> {
    const ep = opts.executionProvider ?? 'cpu';
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [ep],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: opts.threads ?? 0,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      // Errors only: on GPU providers onnxruntime warns at every session that shape ops stay on the CPU
      // (by design) and that unused initializers were dropped — dozens of lines per engine, no action.
      logSeverityLevel: 3,
      // One session per layer means one intra-op pool per layer: spinning pools of idle layers steal the
      // cores from the running one, so they sleep instead (docs/architecture.md).
      ...(ep === 'cpu' ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
      // Each layer's session keeps an arena as large as its largest run: summed over the layers, more than
      // the weights at 1B parameters, and slower; smaller models prefill faster with them (docs/model-scale.md).
      ...(ep === 'cpu' ? { enableCpuMemArena: parameterCount(model) < 1e9 } : {}),
      ...opts.sessionOptions,
    };
    checkProviderInstalled(ep);
    try {
      return await Engine.build(model, opts, sessionOptions, ep);
    } catch (err) {
      throw providerUnavailable(ep, err);
    }
  }

  private static async build(
    model: LoadedModel,
    opts: EngineOptions,
    sessionOptions: ort.InferenceSession.SessionOptions,
    ep: ExecutionProvider,
  ): Promise<Engine> {
    const device =
      ep === 'webgpu' && (opts.deviceResident ?? true)
        ? await Engine.deviceRunner(model, opts, sessionOptions)
        : null;
    const engine = new Engine(
      model,
      sessionOptions,
      ep,
      opts.prefillBlock ?? 512,
      opts.emitPresent ?? false,
      device,
      opts.deviceDecodeBurst ?? DEFAULT_DECODE_BURST,
      device?.weightFormat ?? opts.weights ?? 'fp32',
    );
    if (device) {
      // Fail here, not on the first request, when the provider cannot run: one token through the model.
      const probe = new DeviceKvCache();
      await device.forward(probe, [model.config.bosTokenId]);
      probe.dispose();
    } else {
      for (let l = 0; l < model.config.numLayers; l++) await engine.layerSession(l);
      await engine.headSession();
    }
    return engine;
  }

  private static async deviceRunner(
    model: LoadedModel,
    opts: EngineOptions,
    sessionOptions: ort.InferenceSession.SessionOptions,
  ): Promise<DeviceRunner> {
    const checked =
      opts.deviceAttention && opts.deviceSelectiveAttention
        ? null
        : await chooseAttention(model, sessionOptions);
    return new DeviceRunner(
      model,
      opts.deviceDtype ?? settingDefault('DEVICE_DTYPE'),
      sessionOptions,
      opts.deviceBlock ?? 4096,
      opts.deviceAttention ?? checked!.attention,
      opts.deviceSelectiveAttention ?? checked!.selective,
      opts.weights,
    );
  }

  newCache(capacity = 64): KvCache {
    return new KvCache(this.config.numLayers, this.config.numKvHeads, this.config.headDim, capacity);
  }

  /** An empty cache for generating a sequence: on the device when the engine is device-resident. */
  newSequenceCache(capacity = 64): SequenceCache {
    return this.device ? new DeviceKvCache() : this.newCache(capacity);
  }

  embed(ids: readonly number[]): Float32Array {
    const D = this.config.hiddenSize;
    const out = new Float32Array(ids.length * D);
    this.embeddings ??= new EmbeddingTable(this.model.weights.embedTokens, D);
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new InvalidArgumentError(
          `token id ${id} is outside the vocabulary (size ${this.config.vocabSize})`,
        );
      }
      this.embeddings!.row(id, out, t * D);
    });
    return out;
  }

  rope(positions: ArrayLike<number>): { cos: Float32Array; sin: Float32Array } {
    return ropeTables(this.invFreq, positions);
  }

  /** Run T tokens through one layer against S past rows. */
  async runLayer(
    layer: number,
    hidden: Float32Array,
    rope: { cos: Float32Array; sin: Float32Array },
    pastK: Float32Array,
    pastV: Float32Array,
    mask: Float32Array,
  ): Promise<LayerResult> {
    const { hiddenSize: D, numKvHeads: KV, headDim: hd } = this.config;
    const T = hidden.length / D;
    const S = pastK.length / (KV * hd);
    const feeds = {
      hidden: new ort.Tensor('float32', hidden, [T, D]),
      cos: new ort.Tensor('float32', rope.cos, [T, hd / 2]),
      sin: new ort.Tensor('float32', rope.sin, [T, hd / 2]),
      past_k: new ort.Tensor('float32', pastK, [S, KV, hd]),
      past_v: new ort.Tensor('float32', pastV, [S, KV, hd]),
      mask: new ort.Tensor('float32', mask, [T, S + T]),
    };
    const t0 = performance.now();
    const out = await (await this.layerSession(layer)).run(feeds);
    this.layerObserver?.(T, performance.now() - t0);
    const k = out.k ?? out.present_k;
    const v = out.v ?? out.present_v;
    return {
      hidden: out.hidden_out.data as Float32Array,
      k: (k.data as Float32Array).subarray(k.data.length - T * KV * hd),
      v: (v.data as Float32Array).subarray(v.data.length - T * KV * hd),
    };
  }

  /**
   * Fresh K/V of T tokens at one layer, from that layer's input hidden states; with `withQuery`, their
   * queries too ([T, heads, headDim], RoPE applied).
   */
  async projectKv(
    layer: number,
    hidden: Float32Array,
    rope: { cos: Float32Array; sin: Float32Array },
    withQuery = false,
  ): Promise<{ k: Float32Array; v: Float32Array; q?: Float32Array }> {
    const { hiddenSize: D, headDim: hd } = this.config;
    const T = hidden.length / D;
    const key = withQuery ? -1 - layer : layer;
    let session = this.kvProjSessions.get(key);
    if (!session) {
      const w = this.model.weights.layers[layer];
      const graph = buildKvProjectionGraph(this.config, w, layer, this.weightFormat, withQuery);
      session = createSession(graph, this.sessionOptions);
      this.kvProjSessions.set(key, session);
    }
    const out = await (
      await session
    ).run({
      hidden: new ort.Tensor('float32', hidden, [T, D]),
      cos: new ort.Tensor('float32', rope.cos, [T, hd / 2]),
      sin: new ort.Tensor('float32', rope.sin, [T, hd / 2]),
    });
    const kv = { k: out.k.data as Float32Array, v: out.v.data as Float32Array };
    return withQuery ? { ...kv, q: out.q.data as Float32Array } : kv;
  }

  /** Logits [N, vocab] of N final hidden states. */
  async logits(hidden: Float32Array): Promise<Float32Array> {
    const D = this.config.hiddenSize;
    const session = await this.headSession();
    const out = await session.run({ hidden: new ort.Tensor('float32', hidden, [hidden.length / D, D]) });
    return out.logits.data as Float32Array;
  }

  /**
   * Append `ids` at `positions` (default: right after the cache's last row) through every layer, writing
   * their K/V into the cache. Returns the logits of the rows selected by `logitRows`.
   */
  async forward(
    cache: SequenceCache,
    ids: readonly number[],
    opts: { positions?: ArrayLike<number>; logitRows?: 'last' | 'all' | 'none' } = {},
  ): Promise<Float32Array> {
    if (cache instanceof DeviceKvCache) {
      if (opts.positions || opts.logitRows === 'all') {
        throw new InvalidArgumentError(
          'a device cache appends at the next position and returns the last logits',
        );
      }
      return this.device!.forward(cache, ids);
    }
    const T = ids.length;
    if (T === 0) throw new InvalidArgumentError('forward needs at least one token');
    const start = cache.length === 0 ? 0 : cache.positions[cache.length - 1] + 1;
    const positions = opts.positions ?? Int32Array.from({ length: T }, (_, i) => start + i);
    const rows = opts.logitRows ?? 'last';
    const D = this.config.hiddenSize;
    const B = this.prefillBlock;
    const finals: Float32Array[] = [];
    for (let s = 0; s < T; s += B) {
      const e = Math.min(T, s + B);
      const hidden = await this.forwardBlock(
        cache,
        ids.slice(s, e),
        Array.prototype.slice.call(positions, s, e),
      );
      if (rows === 'all') finals.push(hidden);
      else if (e === T && rows === 'last') finals.push(hidden.subarray((e - s - 1) * D));
    }
    if (rows === 'none') return new Float32Array(0);
    return this.logits(finals.length === 1 ? finals[0] : concatFloat32(finals));
  }

  private async forwardBlock(
    cache: KvCache,
    ids: readonly number[],
    positions: number[],
  ): Promise<Float32Array> {
    const rope = this.rope(positions);
    const mask = buildMask(positions, cache.positions.subarray(0, cache.length));
    cache.reserve(ids.length);
    let hidden = this.embed(ids);
    for (let l = 0; l < this.config.numLayers; l++) {
      const r = await this.runLayer(l, hidden, rope, cache.pastKeys(l), cache.pastValues(l), mask);
      cache.writeRows(l, cache.length, r.k, r.v);
      hidden = r.hidden;
    }
    cache.commit(positions);
    return hidden;
  }

  /**
   * Greedy decoding of up to `steps` tokens after `first` in one device run (argmax on the GPU), or null
   * where the engine cannot: host caches, or bursts turned off (deviceDecodeBurst 1). The cache then holds
   * `first` and every returned token but the last. `steps` is capped at the engine's burst size.
   */
  async decodeGreedy(cache: SequenceCache, first: number, steps: number): Promise<number[] | null> {
    if (!(cache instanceof DeviceKvCache) || this.decodeBurst <= 1 || steps < this.decodeBurst) return null;
    return this.device!.decodeGreedy(cache, first, this.decodeBurst);
  }

  /** Logits at every position of a prompt prefilled from scratch: [ids.length, vocab]. */
  async promptLogits(ids: readonly number[]): Promise<Float32Array> {
    return this.forward(this.newCache(ids.length), ids, { logitRows: 'all' });
  }

  async dispose(): Promise<void> {
    for (const s of this.layers) if (s) await (await s).release();
    if (this.head) await (await this.head).release();
    for (const s of this.kvProjSessions.values()) await (await s).release();
    await this.device?.dispose();
  }
}

export { concatFloat32 };
