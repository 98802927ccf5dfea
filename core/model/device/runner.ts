import ort from 'onnxruntime-node';
import { InvalidArgumentError } from '../../errors.js';
import {
  buildDecodeBurstGraph,
  burstSegments,
  buildDownloadGraph,
  buildStackGraph,
  buildSyncGraph,
  intSegments,
  devicePositions,
  type DeviceDtype,
  type DeviceGraph,
  type SelectiveAttention,
  type StackGraphOptions,
} from './graphs/index.js';
import { DeviceWeights } from './weights.js';
import { createSession } from '../onnx/session.js';
import type { LoadedModel, ModelConfig } from '../types.js';
import type { WeightFormat } from '../weights/format.js';
import { DeviceKvCache, type DeviceLayers, type HostRows, type HostValues } from './cache.js';
import { HostPacker } from './host-pack.js';
import { int64, packInts, range, type Feeds, type Ints } from './ints.js';

/**
 * Sessions, feeds and the runs every use of the device shares: prefill and decoding, batched prefill,
 * uploads and downloads, BOS's rows. Its building blocks (session, stack, run, feeds) are public for the
 * runs a use of the device adds over them: CacheBlend's are in core/blend/device-runs.ts.
 */
export class DeviceRunner {
  readonly config: ModelConfig;
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();
  /** The model's weights on the GPU, shared by every session. */
  readonly weights: DeviceWeights;
  private bos: Promise<{ rows: DeviceKvCache }> | null = null;
  /** The host memory chunk uploads are packed into, reused from run to run (HostPacker). */
  readonly packer = new HostPacker();

  constructor(
    readonly model: LoadedModel,
    readonly dtype: DeviceDtype,
    private readonly sessionOptions: ort.InferenceSession.SessionOptions,
    /** Longest run of new tokens per call; longer prompts are prefilled in blocks. */
    readonly block: number,
    /** Causal attention through onnxruntime's fused kernel, or decomposed (see StackGraphOptions). */
    readonly attention: 'fused' | 'decomposed' = 'fused',
    /** Blend's selective attention (see StackGraphOptions). */
    readonly selective: SelectiveAttention = 'gqa',
    /** Format of the linear layers' weights (default: the compute precision's). */
    readonly weightFormat: WeightFormat = dtype === 'float16' ? 'fp16' : 'fp32',
  ) {
    this.config = model.config;
    this.weights = new DeviceWeights(sessionOptions);
  }

  get bytesPerValue(): number {
    return this.dtype === 'float16' ? 2 : 4;
  }

  session(key: string, build: () => DeviceGraph): Promise<ort.InferenceSession> {
    let s = this.sessions.get(key);
    if (!s) {
      const graph = build();
      const preferredOutputLocation = Object.fromEntries(
        graph.deviceOutputs.map((n) => [n, 'gpu-buffer' as const]),
      );
      s = this.weights
        .ensure(graph.weights)
        .then(() => createSession(graph.model, { ...this.sessionOptions, preferredOutputLocation }));
      this.sessions.set(key, s);
    }
    return s;
  }

  /** A stack's session and the names of its packed integer segments. */
  async stack(
    o: Omit<StackGraphOptions, 'dtype' | 'attention' | 'selective'>,
  ): Promise<{ session: ort.InferenceSession; segs: string[] }> {
    const full: StackGraphOptions = {
      ...o,
      dtype: this.dtype,
      weights: this.weightFormat,
      attention: this.attention,
      ...(o.cache === 'scatter' ? { selective: this.selective } : {}),
    };
    const session = await this.session(`stack:${JSON.stringify(full)}`, () =>
      buildStackGraph(this.config, this.model.weights, full),
    );
    return { session, segs: intSegments(full) };
  }

  runStack(
    stack: { session: ort.InferenceSession; segs: string[] },
    feeds: Feeds,
    ints: Ints,
  ): Promise<Record<string, ort.Tensor>> {
    return this.run(stack.session, { ...feeds, ...packInts(stack.segs, ints) });
  }

  /**
   * Run with the feeds the session declares (a stack without layers, say, takes no positions), and the
   * model weights it names.
   */
  async run(session: ort.InferenceSession, feeds: Feeds): Promise<Record<string, ort.Tensor>> {
    const used: Feeds = {};
    for (const name of session.inputNames) {
      const feed = feeds[name] ?? (await this.weights.get(name));
      if (!feed) throw new Error(`device run: no feed for input ${name}`);
      used[name] = feed;
    }
    return (await session.run(used)) as Record<string, ort.Tensor>;
  }

  /** RoPE positions of the new tokens, checked against the device tables. */
  positionFeeds(positions: ArrayLike<number>): Feeds {
    const last = positions.length ? positions[positions.length - 1] : 0;
    if (last >= devicePositions(this.config)) {
      throw new InvalidArgumentError(
        `position ${last} is beyond the ${devicePositions(this.config)} positions the device engine supports`,
      );
    }
    return { pos_ids: int64(positions, [1, positions.length]) };
  }

  /** GroupQueryAttention's lengths: every sequence ends up with `total` rows. */
  static lengths(batch: number, total: number): Feeds {
    return {
      seqlens_k: new ort.Tensor('int32', new Int32Array(batch).fill(total - 1), [batch]),
      total_len: new ort.Tensor('int32', Int32Array.of(total), []),
    };
  }

  layerOutputs(out: Record<string, ort.Tensor>, from: number, to: number): DeviceLayers {
    const k: ort.Tensor[] = [];
    const v: ort.Tensor[] = [];
    for (let l = from; l < to; l++) {
      k.push(out[`k_${l}`]);
      v.push(out[`v_${l}`]);
    }
    return { k, v };
  }

  /**
   * Append `ids` at the end of the cache through every layer (in blocks of `block` tokens) and return
   * the last row's logits; the cache then holds the new rows too.
   */
  async forward(cache: DeviceKvCache, ids: readonly number[]): Promise<Float32Array> {
    if (ids.length === 0) throw new InvalidArgumentError('forward needs at least one token');
    let logits: Float32Array | null = null;
    for (let s = 0; s < ids.length; s += this.block) {
      logits = await this.forwardBlock(cache, ids.slice(s, s + this.block));
    }
    return logits!;
  }

  private async forwardBlock(cache: DeviceKvCache, ids: readonly number[]): Promise<Float32Array> {
    const L = this.config.numLayers;
    const S = cache.length;
    const T = ids.length;
    const stack = await this.stack({
      from: 0,
      to: L,
      cache: S === 0 ? 'none' : 'append',
      input: 'ids',
      head: true,
      emitHidden: false,
    });
    const feeds: Feeds = { ...this.positionFeeds(range(S, S + T)), ...DeviceRunner.lengths(1, S + T) };
    if (S > 0) {
      for (let l = 0; l < L; l++) {
        feeds[`past_k_${l}`] = cache.k[l];
        feeds[`past_v_${l}`] = cache.v[l];
      }
    }
    const out = await this.runStack(stack, feeds, {
      ids,
      q_pos: range(S, S + T),
      k_pos: range(0, S + T),
    });
    const { k, v } = this.layerOutputs(out, 0, L);
    cache.replace(k, v, S + T);
    return out.logits.data as Float32Array;
  }

  /**
   * Greedy decoding of `steps` tokens in one run (see buildDecodeBurstGraph): `first` goes in after the
   * cache, each step's argmax is taken on the GPU and fed to the next, and only the tokens come back.
   * The cache then holds `first` and every returned token but the last.
   */
  async decodeGreedy(cache: DeviceKvCache, first: number, steps: number): Promise<number[]> {
    const S = cache.length;
    if (S === 0) throw new InvalidArgumentError('greedy decoding continues a prefilled cache');
    this.positionFeeds(range(S, S + steps)); // the positions' bound check
    const key = `burst:${steps}`;
    const session = await this.session(key, () =>
      buildDecodeBurstGraph(this.config, this.model.weights, {
        dtype: this.dtype,
        weights: this.weightFormat,
        steps,
        attention: this.attention,
      }),
    );
    const ints: Ints =
      this.attention === 'decomposed'
        ? { ids: [first], q_pos: range(S, S + steps), k_pos: range(0, S + steps) }
        : { ids: [first] };
    const feeds: Feeds = {};
    for (let i = 0; i < steps; i++) {
      feeds[`seqlens_${i}`] = new ort.Tensor('int32', Int32Array.of(S + i), [1]);
      feeds[`total_len_${i}`] = new ort.Tensor('int32', Int32Array.of(S + i + 1), []);
      feeds[`pos_${i}`] = int64([S + i], [1, 1]);
    }
    for (let l = 0; l < this.config.numLayers; l++) {
      feeds[`past_k_${l}`] = cache.k[l];
      feeds[`past_v_${l}`] = cache.v[l];
    }
    const out = await this.run(session, { ...feeds, ...packInts(burstSegments(this.attention), ints) });
    for (const [name, t] of Object.entries(out)) if (name.includes('_step')) t.dispose();
    const { k, v } = this.layerOutputs(out, 0, this.config.numLayers);
    cache.replace(k, v, S + steps);
    return Array.from(out.tokens.data as Float32Array);
  }

  /**
   * Prefill several sequences from position 0 in one batch, leaving their K/V on the device: per layer
   * [B, kvHeads, T, headDim], T the longest sequence. Shorter sequences are padded at the end; causal
   * attention keeps padding out of every real row. With `sync`, waits for the GPU (one value read back).
   */
  async prefillBatchOnDevice(
    seqs: readonly (readonly number[])[],
    sync = false,
  ): Promise<DeviceLayers & { T: number }> {
    const L = this.config.numLayers;
    const T = Math.max(...seqs.map((s) => s.length));
    const B = seqs.length;
    const ids = new Int32Array(B * T);
    seqs.forEach((s, b) => ids.set(s, b * T));
    const stack = await this.stack({
      from: 0,
      to: L,
      cache: 'none',
      input: 'ids',
      head: false,
      emitHidden: false,
    });
    const out = await this.runStack(
      stack,
      { ...this.positionFeeds(range(0, T)), ...DeviceRunner.lengths(B, T) },
      { ids, q_pos: range(0, T), k_pos: range(0, T) },
    );
    const layers = this.layerOutputs(out, 0, L);
    if (sync) {
      const session = await this.session('sync', () => buildSyncGraph(this.config, this.dtype));
      await this.run(session, { t: layers.k[L - 1] });
    }
    return { ...layers, T };
  }

  /**
   * Prefill several sequences in one batch and bring their K/V back to the host (the precompute path).
   * Returns, per sequence, per layer, its rows [len, kvHeads, headDim] (views of one array per layer), in
   * the device's precision: a float16 device's caches come back as their fp16 bits, half the bytes of
   * fp32 through the slowest step of the path, the GPU-to-host copy.
   */
  async prefillBatch(seqs: readonly (readonly number[])[]): Promise<HostRows[]> {
    if (seqs.length === 0) return [];
    const { numLayers: L, numKvHeads: KV, headDim: hd } = this.config;
    const { k, v, T } = await this.prefillBatchOnDevice(seqs);
    const host = await this.download([...k, ...v], this.dtype === 'float16');
    for (const t of [...k, ...v]) t.dispose();
    const row = KV * hd;
    return seqs.map((s, b) => ({
      k: host.slice(0, L).map((a) => a.subarray(b * T * row, (b * T + s.length) * row)),
      v: host.slice(L).map((a) => a.subarray(b * T * row, (b * T + s.length) * row)),
    }));
  }

  /** Bring device tensors back as fp32 host arrays, in one run. */
  async download(tensors: readonly ort.Tensor[]): Promise<Float32Array[]>;
  /** With `keepHalf` on a float16 device: their fp16 bits (Uint16Array), half the bytes. */
  async download(tensors: readonly ort.Tensor[], keepHalf: boolean): Promise<HostValues[]>;
  async download(tensors: readonly ort.Tensor[], keepHalf = false): Promise<HostValues[]> {
    const n = tensors.length;
    const half = keepHalf && this.dtype === 'float16';
    const session = await this.session(`download:${n}:${half}`, () =>
      buildDownloadGraph(this.config, this.dtype, n, half),
    );
    const feeds: Feeds = {};
    tensors.forEach((t, i) => (feeds[`t${i}`] = t));
    const out = await this.run(session, feeds);
    return tensors.map((_, i) => out[`o${i}`].data as HostValues);
  }

  /** Write the profile of every session created with profiling on (onnxruntime names the files). */
  async endProfiling(): Promise<void> {
    for (const s of this.sessions.values()) (await s).endProfiling();
  }

  async dispose(): Promise<void> {
    if (this.bos) (await this.bos).rows.dispose();
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
    await this.weights.dispose();
  }

  /** BOS's rows (position 0 sees only itself, so they are the same in every prompt), computed once. */
  bosRows(): Promise<{ rows: DeviceKvCache }> {
    if (!this.bos) {
      this.bos = (async () => {
        const rows = new DeviceKvCache();
        await this.forward(rows, [this.config.bosTokenId]);
        return { rows };
      })();
    }
    return this.bos;
  }
}
