import { inverseFrequencies, ropeTables } from '../../../kv/rope.js';
import type { ModelConfig } from '../../types.js';
import type { WeightFormat } from '../../weights/format.js';
import type { Weight } from '../../weights/weight.js';
import { float32ArrayToFloat16 } from '../../../util/half.js';
import { GraphBuilder, type DataType, type OnnxModel } from '../../onnx/builder.js';
import { linear, type WeightData, type WeightSink } from '../../onnx/linear.js';

export type DeviceDtype = 'float32' | 'float16';

export type SelectiveAttention = 'gqa' | 'mha' | 'decomposed';

/** CacheBlend's deviation of fresh from cached rows: squared L2 distance of K, V or both. */
export type DeviationMetric = 'k' | 'v' | 'kv';

/** How the new tokens' K/V meet the cache of a stack's layers. */
export type CacheMode =
  /** no past rows: a prefill from scratch (also batched). */
  | 'none'
  /** past rows `past_k_l` [B, S, ...] followed by the new rows; returns the concatenation. */
  | 'append'
  /** a full cache `cache_k_l` [1, N, ...] whose rows `scatter_rows` are overwritten by the new rows. */
  | 'scatter';

export interface StackGraphOptions {
  /** Layers [from, to). */
  from: number;
  to: number;
  dtype: DeviceDtype;
  /** Format of the linear layers' weights (default: the compute precision's own, fp32 or fp16). */
  weights?: WeightFormat;
  cache: CacheMode;
  /** 'ids': token ids [B, T], embedded in the graph; 'rows': rows `rows` of a hidden state `hidden_in`. */
  input: 'ids' | 'rows';
  /** Return `logits` [B, vocab] of each sequence's last row. */
  head: boolean;
  /** Return the stack's output hidden states as `hidden`. */
  emitHidden: boolean;
  /** append: the past is the first `past_rows` rows of each `past_k_l` / `past_v_l` (int64 [1]). */
  slicePast?: boolean;
  /**
   * Causal attention (none/append): onnxruntime's GroupQueryAttention ('fused', default) or a concatenation
   * and position mask ('decomposed').
   */
  attention?: 'fused' | 'decomposed';
  /**
   * Blend's selective attention (scatter): GroupQueryAttention after the cache with a bias that hides the
   * stale rows ('gqa', default), MultiHeadAttention over repeated K/V heads with a position bias ('mha'),
   * or decomposed.
   */
  selective?: SelectiveAttention;
  /**
   * Return `dev` [C]: squared L2 distance between layer `to`'s fresh K (V, or both) of the first C tokens
   * and their cached rows `ctx_rows` of `cached_k` / `cached_v` (CacheBlend's deviation).
   */
  deviation?: DeviationMetric;
  /**
   * With `deviation`: every row's fresh K/V at layer `to` replace rows [past_rows, N) of the cached layer,
   * returned as `check_k` / `check_v`, and the question's attention to every row at that layer comes back
   * as `attn` [N] (the last rows after the first C are the question's; blendScores.ts).
   */
  questionAttention?: boolean;
  /** scatter: the last active row's attention to every cache row at each layer, summed: `look` [N]. */
  lookahead?: boolean;
  /** scatter: each layer's stored rows that stay are shifted first (inputs shift_w, shift_stale). */
  shiftStale?: boolean;
}

/**
 * A model weight a device graph takes as an input: uploaded to the GPU once (DeviceWeights) and fed to
 * every graph that names it, so the weights are on the card once however many graphs a runner builds
 * (as initializers each session would hold its own copy).
 */
export interface WeightInput {
  name: string;
  type: DataType;
  dims: number[];
  /** The values to upload; called once per runner. */
  make: () => WeightData;
  /** make() gives the transpose ([dims[1], dims[0]]): the GPU transposes it as it uploads it. */
  transpose?: boolean;
}

/** A built graph and which of its outputs stay on the device (the rest come back to the host). */
export interface DeviceGraph {
  model: OnnxModel;
  deviceOutputs: string[];
  weights: WeightInput[];
}

export function finish(c: Ctx, hostOutputs: readonly string[]): DeviceGraph {
  const { g } = c;
  return {
    model: g.toModel(),
    deviceOutputs: g.outputNames().filter((n) => !hostOutputs.includes(n)),
    weights: [...c.weightInputs.values()],
  };
}

/**
 * The small integer inputs of a stack, in the order they are packed into its one int32 input `ints`
 * (sizes in `int_sizes`, int64 on the host). Every host tensor a GPU kernel reads costs onnxruntime's
 * WebGPU provider a staging buffer and a queue submission (docs/gpu.md), so a run uploads one packed
 * tensor instead of one per index list.
 */
export function intSegments(o: StackGraphOptions): string[] {
  const segs: string[] = [o.input === 'ids' ? 'ids' : 'rows'];
  const layers = o.to > o.from;
  const selective = o.selective ?? 'gqa';
  if (layers && o.cache === 'scatter') {
    segs.push('q_pos', 'row_src', 'row_new');
    segs.push(...(selective === 'gqa' ? ['key_pos', 'key_hidden'] : ['k_pos']));
  } else if (layers && o.attention === 'decomposed') segs.push('q_pos', 'k_pos');
  if (o.deviation) segs.push('ctx_rows');
  return segs;
}

/** The graph under construction plus the precision helpers every piece needs. */
export class Ctx {
  readonly t: 'float' | 'float16';
  /** The RoPE tables, added on first use. */
  tables: { cos: string; sin: string } | null = null;
  /** The segments of the packed integer input, by name (see intSegments). */
  ints: Record<string, string> = {};
  private pastRowsInput: string | null = null;
  /** Values built once per graph and shared, by key. */
  readonly memo = new Map<string, unknown>();
  /** RoPE positions [B, T] (int64), declared on first use: fused causal attention derives its own. */
  positions: (() => string) | null = null;

  private lengthInputs: { seqlens: string; total: string } | null = null;

  /** GroupQueryAttention's `seqlens_k` int32 [B] and `total_len` int32 [] inputs, declared once. */
  lengths(): { seqlens: string; total: string } {
    this.lengthInputs ??= {
      seqlens: this.g.input('seqlens_k', 'int32', ['B']),
      total: this.g.input('total_len', 'int32', []),
    };
    return this.lengthInputs;
  }

  /** The `past_rows` input (int64 [1]), declared once. */
  pastRows(): string {
    this.pastRowsInput ??= this.g.input('past_rows', 'int64', [1]);
    return this.pastRowsInput;
  }
  readonly format: WeightFormat;
  /** The model weights the graph takes as inputs, by name. */
  readonly weightInputs = new Map<string, WeightInput>();

  constructor(
    readonly g: GraphBuilder,
    readonly cfg: ModelConfig,
    dtype: DeviceDtype,
    format?: WeightFormat,
  ) {
    this.t = dtype === 'float16' ? 'float16' : 'float';
    this.format = format ?? (dtype === 'float16' ? 'fp16' : 'fp32');
  }

  /** Model weights become graph inputs (see WeightInput). */
  readonly input: WeightSink = (name, type, dims, make, transpose) => {
    if (!this.weightInputs.has(name)) {
      this.g.input(name, type, dims);
      this.weightInputs.set(name, { name, type, dims, make, transpose });
    }
    return name;
  };

  /** x [..., in] times stacked [out_k, in] matrices' transpose, in the graph's weight format. */
  linear(x: string, name: string, parts: { w: Weight; out: number }[], inputs: number): string {
    const o = { format: this.format, xType: this.t, accuracyLevel: 0 };
    return linear(this.g, this.input, x, name, { parts, inputs }, o);
  }

  /** fp32 → compute precision (no-op in fp32). */
  low(x: string): string {
    return this.t === 'float' ? x : this.g.o('Cast', [x], { to: 10 });
  }

  /** compute precision → fp32. */
  high(x: string): string {
    return this.t === 'float' ? x : this.g.o('Cast', [x], { to: 1 });
  }

  /** A model weight (an input) in the compute precision; `data` is read only when it is uploaded. */
  weight(name: string, data: () => Float32Array, dims: number[]): string {
    const half = this.t === 'float16';
    return this.input(name, this.t, dims, () => (half ? float32ArrayToFloat16(data()) : data()));
  }

  /** A model weight kept in fp32 (the norms, which run on the fp32 residual stream). */
  weightF32(name: string, w: Weight): string {
    return this.input(name, 'float', [...w.shape], () => w.f32());
  }

  /** A constant of the graph (an initializer) in the compute precision. */
  constant(name: string, data: Float32Array, dims: number[]): string {
    if (this.g.hasWeight(name)) return name;
    return this.g.weight(name, data, dims, this.t);
  }
}

/** Positions the device RoPE tables cover: the model's limit, at most this many. */
export const MAX_DEVICE_POSITIONS = 32768;

export function devicePositions(cfg: ModelConfig): number {
  return Math.min(cfg.maxPositionEmbeddings, MAX_DEVICE_POSITIONS);
}

/**
 * onnxruntime's fused RoPE (com.microsoft RotaryEmbedding) of x [B, T, heads*hd] at `pos` [B, T], from
 * tables of every position computed like the host's (float64, then rounded).
 */
export function rotary(c: Ctx, x: string, pos: string): string {
  const tables = ropeCaches(c);
  const interleaved = c.cfg.ropeLayout === 'interleaved' ? 1 : 0;
  return c.g.op('RotaryEmbedding', [x, pos, tables.cos, tables.sin], { interleaved }, 1, 'com.microsoft')[0];
}

/** The RoPE tables of every position the device covers ([P, headDim / 2], compute precision), added once. */
export function ropeCaches(c: Ctx): { cos: string; sin: string } {
  const { cfg } = c;
  const P = devicePositions(cfg);
  if (!c.tables) {
    const { cos, sin } = ropeTables(
      inverseFrequencies(cfg),
      Int32Array.from({ length: P }, (_, i) => i),
    );
    c.tables = {
      cos: c.constant('rope_cos', cos, [P, cfg.headDim / 2]),
      sin: c.constant('rope_sin', sin, [P, cfg.headDim / 2]),
    };
  }
  return c.tables;
}
