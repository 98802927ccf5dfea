import type { ModelConfig } from '../../types.js';
import { GraphBuilder } from '../../onnx/builder.js';
import { Ctx, finish, rotary, type DeviceDtype, type DeviceGraph } from './context.js';

/**
 * Assemble a request's cache from chunk caches already on the device: for layers [from, L), BOS's row,
 * then each chunk's rows with keys rotated from positions 1…n to the chunk's offset (`shift_pos`: each
 * row's offset − 1), then (withQuestion) `q_len` zero rows the blend overwrites.
 * Inputs: bos_k/bos_v [L, KV, 1, hd], c{i}_k/c{i}_v [L, KV, n_i, hd]; outputs k_l/v_l [1, KV, N, hd].
 */
export function buildAssembleGraph(
  cfg: ModelConfig,
  dtype: DeviceDtype,
  chunks: number,
  from: number,
  withQuestion: boolean,
): DeviceGraph {
  const { numLayers: L, numKvHeads: KV, headDim: hd } = cfg;
  const g = new GraphBuilder(`assemble_${chunks}`);
  const c = new Ctx(g, cfg, dtype);
  const layers = (t: string) =>
    from === 0 ? t : g.o('Slice', [t, g.int64s([from]), g.int64s([L]), g.int64s([0])]);
  // Chunks' keys concatenated, then rotated in one kernel: shift_pos [L - from, rows] holds each row's
  // shift (its chunk's offset - 1), and RoPE rotations compose, so p becomes p + shift.
  const keys = Array.from({ length: chunks }, (_, i) =>
    layers(g.input(`c${i}_k`, c.t, [L, KV, `n${i}`, hd])),
  );
  const shift = g.input('shift_pos', 'int64', [L - from, 'rows']);
  const rotated = rotary(c, chunks === 1 ? keys[0] : g.o('Concat', keys, { axis: 2 }), shift);
  const ks = [layers(g.input('bos_k', c.t, [L, KV, 1, hd])), rotated];
  const vs = [layers(g.input('bos_v', c.t, [L, KV, 1, hd]))];
  for (let i = 0; i < chunks; i++) vs.push(layers(g.input(`c${i}_v`, c.t, [L, KV, `n${i}`, hd])));
  if (withQuestion) {
    const qLen = g.input('q_len', 'int64', [1]);
    const shape = g.o('Concat', [g.int64s([L - from, KV]), qLen, g.int64s([hd])], { axis: 0 });
    const zeros = g.o('Expand', [g.scalar(0, 'zero', c.t), shape]);
    ks.push(zeros);
    vs.push(zeros);
  }
  const n = L - from;
  const split = (all: string[], name: string) => {
    const whole = g.o('Concat', all, { axis: 2 });
    const outs = n === 1 ? [whole] : splitMany(g, whole, Array<number>(n).fill(1), 0);
    outs.forEach((t, i) => g.output(`${name}_${from + i}`, t, c.t, [1, KV, 'N', hd]));
  };
  split(ks, 'k');
  split(vs, 'v');
  return finish(c, []);
}

/** Outputs a WebGPU shader may write besides its one input: 16 storage buffers a shader stage. */
const MAX_SPLIT_OUTPUTS = 15;

/**
 * Split x along `axis` into pieces of `sizes`, in rounds of at most MAX_SPLIT_OUTPUTS outputs (a 16-layer
 * model's per-layer split is over the limit: "Too many storage buffers in shader", seen on an H200).
 */
function splitMany(g: GraphBuilder, x: string, sizes: number[], axis: number): string[] {
  if (sizes.length <= MAX_SPLIT_OUTPUTS) return g.op('Split', [x, g.int64s(sizes)], { axis }, sizes.length);
  const per = Math.ceil(sizes.length / MAX_SPLIT_OUTPUTS);
  const groups = Array.from({ length: Math.ceil(sizes.length / per) }, (_, i) =>
    sizes.slice(i * per, (i + 1) * per),
  );
  const parts = splitMany(
    g,
    x,
    groups.map((s) => s.reduce((a, b) => a + b, 0)),
    axis,
  );
  return parts.flatMap((p, i) => (groups[i].length === 1 ? [p] : splitMany(g, p, groups[i], axis)));
}

/** Host fp32 token-major [L, n, KV, hd] K and V → device [L, KV, n, hd] in the compute precision. */
export function buildUploadGraph(cfg: ModelConfig, dtype: DeviceDtype): DeviceGraph {
  const { numKvHeads: KV, headDim: hd } = cfg;
  const g = new GraphBuilder('upload');
  const c = new Ctx(g, cfg, dtype);
  for (const name of ['k', 'v']) {
    const x = g.o('Transpose', [g.input(name, 'float', ['L', 'n', KV, hd])], { perm: [0, 2, 1, 3] });
    g.output(`${name}_dev`, c.low(x), c.t, ['L', KV, 'n', hd]);
  }
  return finish(c, []);
}

/**
 * One value of a device tensor [B, KV, rows, hd] back on the host: reading it waits for every kernel
 * queued before (a precompute batch's timing, without bringing its caches back).
 */
export function buildSyncGraph(cfg: ModelConfig, dtype: DeviceDtype): DeviceGraph {
  const g = new GraphBuilder('sync');
  const c = new Ctx(g, cfg, dtype);
  const x = g.input('t', c.t, ['B', 'H', 'R', 'D']);
  const one = g.o('Slice', [x, g.int64s([0, 0, 0, 0]), g.int64s([1, 1, 1, 1])]);
  g.output('first', c.high(one), 'float', [1, 1, 1, 1]);
  return finish(c, ['first']);
}

/**
 * Device tensors t0…t{count-1} [B, KV, rows, hd] → host tensors o0… token-major [B, rows, KV, hd], fp32
 * or (`keepPrecision`) in the compute precision: the one way caches come back from the device.
 */
export function buildDownloadGraph(
  cfg: ModelConfig,
  dtype: DeviceDtype,
  count: number,
  keepPrecision = false,
): DeviceGraph {
  const g = new GraphBuilder('download');
  const c = new Ctx(g, cfg, dtype);
  for (let i = 0; i < count; i++) {
    const t = g.input(`t${i}`, c.t, ['B', 'H', 'R', 'D']);
    const x = g.o('Transpose', [keepPrecision ? t : c.high(t)], { perm: [0, 2, 1, 3] });
    g.output(`o${i}`, x, keepPrecision ? c.t : 'float', ['B', 'R', 'H', 'D']);
  }
  return finish(c, g.outputNames());
}
