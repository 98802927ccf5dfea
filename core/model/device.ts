import ort from 'onnxruntime-node';
import { InvalidArgumentError } from '../errors.js';
import {
  buildAssembleGraph,
  buildDecodeBurstGraph,
  burstSegments,
  buildDownloadGraph,
  buildStackGraph,
  buildSyncGraph,
  buildUploadGraph,
  intSegments,
  devicePositions,
  type DeviceDtype,
  type DeviceGraph,
  type SelectiveAttention,
  type StackGraphOptions,
} from './onnx/device-graphs.js';
import { DeviceWeights, hostWeightTensor } from './device/weights.js';
import { createSession } from './onnx/session.js';
import type { LoadedModel, ModelConfig } from './types.js';
import type { WeightFormat } from './weights/format.js';

/**
 * Device-resident execution on the WebGPU provider (the only GPU provider whose device tensors the Node
 * binding hands to JavaScript). Hidden states and KV caches live in GPU buffers between runs: a run's
 * device outputs (`preferredOutputLocation: 'gpu-buffer'`) are fed back as the next run's inputs, and
 * only logits and blend's deviations are returned on the host. Each tensor is released with `dispose()`
 * as soon as nothing reads it, so GPU memory does not wait for the JavaScript garbage collector.
 *
 * Cache row r holds the token at position r (prompts are always laid out from position 0), which lets
 * the graphs build their masks from positions alone.
 */

/** A sequence's KV cache on the device: per layer [1, length, kvHeads, headDim]. */
export class DeviceKvCache {
  constructor(
    public k: ort.Tensor[] = [],
    public v: ort.Tensor[] = [],
    public length = 0,
  ) {}

  /** Take new per-layer tensors (from a run), releasing the ones they replace. */
  replace(k: ort.Tensor[], v: ort.Tensor[], length: number): void {
    const keep = new Set([...k, ...v]);
    for (const t of [...this.k, ...this.v]) if (!keep.has(t)) t.dispose();
    this.k = k;
    this.v = v;
    this.length = length;
  }

  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
    this.k = [];
    this.v = [];
    this.length = 0;
  }
}

/**
 * One chunk's cache on the device: K and V [layers, kvHeads, tokens, headDim], keys at positions 1…n.
 * Reference-counted: whoever uploads it holds one reference, a GPU tier that keeps it another, a request
 * using it a third; the buffers are released with the last.
 */
export class DeviceChunk {
  private refs = 1;

  constructor(
    readonly k: ort.Tensor,
    readonly v: ort.Tensor,
    readonly tokens: number,
    readonly bytes: number,
  ) {}

  retain(): this {
    if (this.refs === 0) throw new Error('device chunk already released');
    this.refs++;
    return this;
  }

  /** A new reference, or false when the buffers are already gone (evicted meanwhile). */
  tryRetain(): boolean {
    if (this.refs === 0) return false;
    this.refs++;
    return true;
  }

  release(): void {
    if (this.refs === 0) return;
    if (--this.refs === 0) {
      this.k.dispose();
      this.v.dispose();
    }
  }
}

/**
 * Values of a cache on the host: fp32, or the fp16 bits a float16 device computed (a Uint16Array), which
 * an fp16 store keeps as they are.
 */
export type HostValues = Float32Array | Uint16Array;

/** Host K/V of one sequence: per layer [rows, kvHeads, headDim]. */
export interface HostRows {
  k: HostValues[];
  v: HostValues[];
}

type Feeds = Record<string, ort.Tensor>;

/** Per-layer device tensors K and V (a cache's layers, or a stack's outputs). */
export interface DeviceLayers {
  k: ort.Tensor[];
  v: ort.Tensor[];
}

const int64 = (a: ArrayLike<number>, dims = [a.length]) =>
  new ort.Tensor('int64', BigInt64Array.from(Array.from(a, (x) => BigInt(x))), dims);
const range = (from: number, to: number) => Int32Array.from({ length: to - from }, (_, i) => from + i);

type Ints = Record<string, ArrayLike<number>>;

/** The packed integer input of a stack (see intSegments): one int32 tensor and its segment sizes. */
function packInts(segs: readonly string[], values: Ints): Feeds {
  const sizes = segs.map((name) => {
    if (!values[name]) throw new Error(`device run: no values for ${name}`);
    return values[name].length;
  });
  const all = new Int32Array(sizes.reduce((a, b) => a + b, 0));
  let at = 0;
  segs.forEach((name, i) => {
    all.set(values[name], at);
    at += sizes[i];
  });
  return {
    ints: new ort.Tensor('int32', all, [all.length]),
    int_sizes: int64(sizes),
  };
}

/**
 * What blend's selective layers need about the `active` prompt positions in a cache of `rows` rows: which
 * rows they replace and from which new row (row_new, row_src; for GroupQueryAttention the new rows follow
 * the cache's in its present output, so the index is rows + i), the keys' positions (k_pos: the cache's;
 * key_pos/key_hidden: the cache's then the new rows', with the replaced rows hidden).
 */
function selectiveInts(active: ArrayLike<number>, rows: number, selective: SelectiveAttention): Ints {
  const A = active.length;
  const isNew = new Int32Array(rows);
  const src = new Int32Array(rows);
  const offset = selective === 'gqa' ? rows : 0;
  for (let i = 0; i < A; i++) {
    isNew[active[i]] = 1;
    src[active[i]] = offset + i;
  }
  const keyPos = new Int32Array(rows + A);
  keyPos.set(range(0, rows));
  keyPos.set(active, rows);
  const keyHidden = new Int32Array(rows + A);
  keyHidden.set(isNew);
  return {
    q_pos: active,
    row_new: isNew,
    row_src: src,
    k_pos: range(0, rows),
    key_pos: keyPos,
    key_hidden: keyHidden,
  };
}

type AttentionChoice = Pick<StackGraphOptions, 'attention' | 'selective'>;

/**
 * Largest difference between two attention variants of one stack (layer 0) on the same feeds; Infinity
 * when a variant does not run here.
 */
async function variantDifference(
  model: LoadedModel,
  sessionOptions: ort.InferenceSession.SessionOptions,
  cache: StackGraphOptions['cache'],
  variants: [AttentionChoice, AttentionChoice],
  feeds: Feeds,
  ints: (v: AttentionChoice) => Ints,
): Promise<number> {
  const outputs: Float32Array[] = [];
  for (const variant of variants) {
    try {
      outputs.push(await runVariant(model, sessionOptions, cache, variant, feeds, ints(variant)));
    } catch {
      return Infinity;
    }
  }
  let worst = 0;
  for (let i = 0; i < outputs[0].length; i++)
    worst = Math.max(worst, Math.abs(outputs[0][i] - outputs[1][i]));
  return worst;
}

async function runVariant(
  model: LoadedModel,
  sessionOptions: ort.InferenceSession.SessionOptions,
  cache: StackGraphOptions['cache'],
  variant: AttentionChoice,
  feeds: Feeds,
  ints: Ints,
): Promise<Float32Array> {
  const options: StackGraphOptions = {
    from: 0,
    to: 1,
    dtype: 'float32',
    cache,
    input: 'rows',
    head: false,
    emitHidden: true,
    ...variant,
  };
  const graph = buildStackGraph(model.config, model.weights, options);
  const session = await createSession(graph.model, sessionOptions);
  try {
    const all = { ...feeds, ...packInts(intSegments(options), ints) };
    for (const w of graph.weights) all[w.name] = hostWeightTensor(w);
    const used = Object.fromEntries(session.inputNames.map((n) => [n, all[n]]));
    return (await session.run(used)).hidden.data as Float32Array;
  } finally {
    await session.release();
  }
}

/**
 * Which attention kernels to use on this adapter: onnxruntime's fused ones (GroupQueryAttention for causal
 * runs; for blend's selective layers GroupQueryAttention with a bias, else MultiHeadAttention) where they
 * compute what the decomposed graphs compute, on layer 0 of the model, else the decomposed graphs. Fused
 * kernels were seen wrong on Mesa's software Vulkan (lavapipe) from 32 tokens on, so the engine checks
 * once at start instead of trusting them.
 */
export async function chooseAttention(
  model: LoadedModel,
  sessionOptions: ort.InferenceSession.SessionOptions,
): Promise<{ attention: 'fused' | 'decomposed'; selective: SelectiveAttention }> {
  const { hiddenSize: D, numKvHeads: KV, headDim: hd } = model.config;
  const T = 48;
  const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));
  const causal = await variantDifference(
    model,
    sessionOptions,
    'none',
    [{ attention: 'fused' }, { attention: 'decomposed' }],
    {
      hidden_in: new ort.Tensor('float32', wave(T * D, 0.37), [1, T, D]),
      pos_ids: int64(range(0, T), [1, T]),
      ...DeviceRunner.lengths(1, T),
    },
    () => ({ rows: range(0, T), q_pos: range(0, T), k_pos: range(0, T) }),
  );
  // Blend's shape: every third of 96 cached rows and the last 8 recomputed, attending over all 96.
  const N = 96;
  const active = Int32Array.from(range(0, N).filter((p) => p % 3 === 1 || p >= N - 8));
  const A = active.length;
  const feeds: Feeds = {
    hidden_in: new ort.Tensor('float32', wave(A * D, 0.29), [1, A, D]),
    pos_ids: int64(active, [1, A]),
    ...DeviceRunner.lengths(1, N + A),
    cache_k_0: new ort.Tensor('float32', wave(KV * N * hd, 0.11), [1, KV, N, hd]),
    cache_v_0: new ort.Tensor('float32', wave(KV * N * hd, 0.07), [1, KV, N, hd]),
  };
  const ints = (v: AttentionChoice) => ({ rows: range(0, A), ...selectiveInts(active, N, v.selective!) });
  let selective: SelectiveAttention = 'decomposed';
  for (const fused of ['mha', 'gqa'] as const) {
    const d = await variantDifference(
      model,
      sessionOptions,
      'scatter',
      [{ selective: fused }, { selective: 'decomposed' }],
      feeds,
      ints,
    );
    if (d <= 1e-3) {
      selective = fused;
      break;
    }
  }
  return { attention: causal <= 1e-3 ? 'fused' : 'decomposed', selective };
}

export class DeviceRunner {
  readonly config: ModelConfig;
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();
  /** The model's weights on the GPU, shared by every session. */
  readonly weights: DeviceWeights;
  private bos: Promise<{ rows: DeviceKvCache; chunk: DeviceChunk }> | null = null;

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

  private session(key: string, build: () => DeviceGraph): Promise<ort.InferenceSession> {
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
  private async stack(
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

  private runStack(
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
  private async run(session: ort.InferenceSession, feeds: Feeds): Promise<Record<string, ort.Tensor>> {
    const used: Feeds = {};
    for (const name of session.inputNames) {
      const feed = feeds[name] ?? (await this.weights.get(name));
      if (!feed) throw new Error(`device run: no feed for input ${name}`);
      used[name] = feed;
    }
    return (await session.run(used)) as Record<string, ort.Tensor>;
  }

  /** RoPE positions of the new tokens, checked against the device tables. */
  private positionFeeds(positions: ArrayLike<number>): Feeds {
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

  private layerOutputs(out: Record<string, ort.Tensor>, from: number, to: number): DeviceLayers {
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
   * fp32 through the slowest step of the path (the GPU-to-host copy: about 0.9 GB/s measured on an H100).
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

  /** Upload a chunk's cache (per layer [n, kvHeads, headDim] fp32, keys at positions 1…n). */
  async upload(k: readonly Float32Array[], v: readonly Float32Array[], tokens: number): Promise<DeviceChunk> {
    const { numLayers: L, numKvHeads: KV, headDim: hd } = this.config;
    const rows = tokens * KV * hd;
    const pack = (layers: readonly Float32Array[]) => {
      const all = new Float32Array(L * rows);
      layers.forEach((a, l) => all.set(a.subarray(0, rows), l * rows));
      return new ort.Tensor('float32', all, [L, tokens, KV, hd]);
    };
    const session = await this.session('upload', () => buildUploadGraph(this.config, this.dtype));
    const out = await this.run(session, { k: pack(k), v: pack(v) });
    return new DeviceChunk(out.k_dev, out.v_dev, tokens, 2 * L * rows * this.bytesPerValue);
  }

  /**
   * A prompt's cache for layers [from, L) from chunk caches on the device: BOS's row, each chunk's rows
   * (keys rotated from positions 1…n to its offset), then `questionRows` zero rows for a blend to fill.
   * Returned per layer from `from` on, [1, rows, kvHeads, headDim].
   */
  async assemble(
    chunks: readonly DeviceChunk[],
    offsets: readonly number[],
    from: number,
    questionRows: number,
  ): Promise<DeviceLayers> {
    const n = chunks.length;
    const withQuestion = questionRows > 0;
    const session = await this.session(`assemble:${n}:${from}:${withQuestion}`, () =>
      buildAssembleGraph(this.config, this.dtype, n, from, withQuestion),
    );
    const bos = (await this.bosRows()).chunk;
    const contextRows = chunks.reduce((a, c) => a + c.tokens, 0);
    const shifts = new BigInt64Array(contextRows);
    let at = 0;
    chunks.forEach((c, i) => {
      shifts.fill(BigInt(offsets[i] - 1), at, at + c.tokens);
      at += c.tokens;
    });
    const layers = this.config.numLayers - from;
    const shiftPos = new BigInt64Array(layers * contextRows);
    for (let l = 0; l < layers; l++) shiftPos.set(shifts, l * contextRows);
    const feeds: Feeds = {
      bos_k: bos.k,
      bos_v: bos.v,
      q_len: int64([questionRows]),
      shift_pos: new ort.Tensor('int64', shiftPos, [layers, contextRows]),
    };
    chunks.forEach((c, i) => Object.assign(feeds, { [`c${i}_k`]: c.k, [`c${i}_v`]: c.v }));
    return this.layerOutputs(await this.run(session, feeds), from, this.config.numLayers);
  }

  /**
   * CacheBlend's first stage: the prompt's tokens from the first chunk on (prompt index contextStart)
   * through layers [0, check) after the rows below them (BOS and the template prefix, the first
   * contextStart rows of `past`, that layer's assembled cache), then the deviation at layer `check` of the
   * context tokens' fresh K/V from `cached` (that layer's assembled cache). Returns the check layer's input
   * hidden states (on the device), the deviations (on the host) and the caches of layers [0, check).
   */
  async blendFront(
    layout: { promptIds: readonly number[]; contextStart: number; contextEnd: number },
    cached: { k: ort.Tensor; v: ort.Tensor },
    past: DeviceLayers,
    check: number,
    metric: 'k' | 'v' | 'kv',
  ): Promise<DeviceLayers & { hidden: ort.Tensor; dev: Float32Array }> {
    const { promptIds, contextStart: start, contextEnd } = layout;
    const N = promptIds.length;
    const stack = await this.stack({
      from: 0,
      to: check,
      cache: 'append',
      slicePast: true,
      input: 'ids',
      head: false,
      emitHidden: true,
      deviation: metric,
    });
    const feeds: Feeds = {
      ...this.positionFeeds(range(start, N)),
      ...DeviceRunner.lengths(1, N),
      past_rows: int64([start]),
      cached_k: cached.k,
      cached_v: cached.v,
    };
    for (let l = 0; l < check; l++) {
      feeds[`past_k_${l}`] = past.k[l];
      feeds[`past_v_${l}`] = past.v[l];
    }
    const out = await this.runStack(stack, feeds, {
      ids: promptIds.slice(start),
      q_pos: range(start, N),
      k_pos: range(0, N),
      ctx_rows: range(start, contextEnd),
    });
    return { ...this.layerOutputs(out, 0, check), hidden: out.hidden, dev: out.dev.data as Float32Array };
  }

  /**
   * CacheBlend's selective layers [from, to): the `active` prompt positions (ascending; the selected context
   * tokens, then the question), taken from rows `rows` of `hidden`, have their fresh K/V overwrite their
   * rows of `cache` (those layers' caches, N rows each) before they attend over it by position. Returns
   * those layers' blended caches and, as asked: the last active row's logits (`to` = L), the output hidden
   * states (one row per active token), and the deviation at layer `to` of the first `score.count` active
   * tokens from `score.cached` (gradual filtering).
   */
  async blendSelected(
    input: { hidden: ort.Tensor; rows: ArrayLike<number>; active: Int32Array; promptTokens: number },
    cache: DeviceLayers,
    from: number,
    to: number,
    score: { metric: 'k' | 'v' | 'kv'; count: number; cached: { k: ort.Tensor; v: ort.Tensor } } | null,
  ): Promise<DeviceLayers & { logits?: Float32Array; hidden?: ort.Tensor; dev?: Float32Array }> {
    const L = this.config.numLayers;
    const { active } = input;
    const stack = await this.stack({
      from,
      to,
      cache: 'scatter',
      input: 'rows',
      head: to === L,
      emitHidden: to < L,
      ...(score ? { deviation: score.metric } : {}),
    });
    const N = input.promptTokens;
    const feeds: Feeds = {
      hidden_in: input.hidden,
      ...this.positionFeeds(active),
      ...DeviceRunner.lengths(1, N + active.length),
    };
    const ints: Ints = { rows: input.rows, ...selectiveInts(active, N, this.selective) };
    if (score) {
      ints.ctx_rows = active.subarray(0, score.count);
      Object.assign(feeds, { cached_k: score.cached.k, cached_v: score.cached.v });
    }
    for (let l = from; l < to; l++) {
      feeds[`cache_k_${l}`] = cache.k[l - from];
      feeds[`cache_v_${l}`] = cache.v[l - from];
    }
    const out = await this.runStack(stack, feeds, ints);
    return {
      ...this.layerOutputs(out, from, to),
      logits: out.logits?.data as Float32Array | undefined,
      hidden: out.hidden,
      dev: out.dev?.data as Float32Array | undefined,
    };
  }

  /** Write the profile of every session created with profiling on (onnxruntime names the files). */
  async endProfiling(): Promise<void> {
    for (const s of this.sessions.values()) (await s).endProfiling();
  }

  async dispose(): Promise<void> {
    if (this.bos) {
      const { rows, chunk } = await this.bos;
      rows.dispose();
      chunk.release();
    }
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
    await this.weights.dispose();
  }

  /** BOS's rows (position 0 sees only itself, so they are the same in every prompt), computed once. */
  bosRows(): Promise<{ rows: DeviceKvCache; chunk: DeviceChunk }> {
    if (!this.bos) {
      this.bos = (async () => {
        const rows = new DeviceKvCache();
        await this.forward(rows, [this.config.bosTokenId]);
        const host = await this.download([...rows.k, ...rows.v]);
        const L = this.config.numLayers;
        return { rows, chunk: await this.upload(host.slice(0, L), host.slice(L), 1) };
      })();
    }
    return this.bos;
  }
}
