import type { ModelConfig } from '../../types.js';
import { GraphBuilder } from '../../onnx/builder.js';
import { Ctx, finish, rotary, type DeviceDtype, type DeviceGraph } from './context.js';

/**
 * The stored form of the host bytes an assemble run uploads: fp16 or fp32 values, or int8 with one fp16
 * scale per token and KV head (x = q × scale), dequantized on the GPU.
 */
export type HostKvForm = 'float16' | 'float32' | 'int8';

/** What one assemble graph takes (see buildAssembleGraph). */
export interface AssembleSpec {
  /** Per chunk, in prompt order: already on the device, or in the host pack. */
  chunks: readonly ('device' | 'host')[];
  /** The host pack's form; null when every chunk is on the device. */
  host: HostKvForm | null;
  /** Consecutive layers assembled in one run. */
  layers: number;
  /** Zero rows for the question after the context (a blend fills them). */
  withQuestion: boolean;
  /** Also output each host chunk's rows on the device, for a GPU tier to keep. */
  keepHost: boolean;
}

/** The WebGPU provider binds at most 16 storage buffers a kernel: a Concat reads at most this many. */
const MAX_CONCAT_INPUTS = 8;

function concat(g: GraphBuilder, parts: string[], axis: number): string {
  if (parts.length === 1) return parts[0];
  if (parts.length <= MAX_CONCAT_INPUTS) return g.o('Concat', parts, { axis });
  const groups: string[] = [];
  for (let i = 0; i < parts.length; i += MAX_CONCAT_INPUTS) {
    groups.push(concat(g, parts.slice(i, i + MAX_CONCAT_INPUTS), axis));
  }
  return concat(g, groups, axis);
}

/** Elements [at, at + 1) of the int64 vector `ints`, as a 1-element tensor (a Slice bound). */
function intAt(g: GraphBuilder, ints: string, at: number): string {
  return g.o('Slice', [ints, g.int64s([at]), g.int64s([at + 1])]);
}

/**
 * The host pack on the device, [layers, 2 (K, V), KV, rows, hd] in the compute precision. It arrives as
 * stored, token-major: fp16/fp32 `host` [layers, 2, rows, KV, hd]; int8 `host` [layers·2·rows·KV, hd]
 * with `host_scale` fp16 [layers·2·rows·KV].
 */
function hostPack(c: Ctx, form: HostKvForm, G: number): string {
  const { g } = c;
  const { numKvHeads: KV, headDim: hd } = c.cfg;
  let tokenMajor: string;
  if (form === 'int8') {
    const q = g.input('host', 'int8', ['qrows', hd]);
    const scale = g.o('Cast', [g.input('host_scale', 'float16', ['qrows'])], { to: 1 });
    // Per-axis dequantization over rows of hd values: one scale per token and KV head.
    const x = c.low(g.o('DequantizeLinear', [q, scale], { axis: 0 }));
    tokenMajor = g.o('Reshape', [x, g.int64s([G, 2, -1, KV, hd])]);
  } else {
    const x = g.input('host', form === 'float16' ? 'float16' : 'float', [G, 2, 'hrows', KV, hd]);
    const same = (form === 'float16') === (c.t === 'float16');
    tokenMajor = same ? x : g.o('Cast', [x], { to: c.t === 'float16' ? 10 : 1 });
  }
  return g.o('Transpose', [tokenMajor], { perm: [0, 1, 3, 2, 4] });
}

/**
 * `layers` consecutive layers of a request's cache from its chunks, in one run (see
 * core/blend/device-runs.ts). For each layer j: BOS's row (`bos_k_j`, `bos_v_j` [1, KV, 1, hd]), each chunk's
 * rows with keys rotated from positions 1…n to the chunk's offset (rotations compose), then `q_len` zero
 * rows for the question. Device chunks come as `c{i}_k_j` / `c{i}_v_j` [KV, n, hd]; host chunks as one
 * pack of every host chunk's rows in prompt order (hostPack). `ints` (int64) packs
 * [q_len, (start, end) of each host chunk's rows in the pack, each context row's shift (offset − 1)].
 * Outputs `k_j`, `v_j` [1, KV, N, hd] and, with keepHost, `h{i}_k_j` / `h{i}_v_j` [KV, n, hd].
 */
export function buildAssembleGraph(cfg: ModelConfig, dtype: DeviceDtype, s: AssembleSpec): DeviceGraph {
  const { numKvHeads: KV, headDim: hd } = cfg;
  const G = s.layers;
  const g = new GraphBuilder('assemble');
  const c = new Ctx(g, cfg, dtype);
  const hostCount = s.chunks.filter((f) => f === 'host').length;
  const ints = g.input('ints', 'int64', ['ints']);
  const qLen = intAt(g, ints, 0);
  const shift = g.o('Unsqueeze', [
    g.o('Slice', [ints, g.int64s([1 + 2 * hostCount]), g.int64s([2 ** 53])]),
    g.int64s([0]),
  ]);
  const pack = s.host ? hostPack(c, s.host, G) : null;
  const wholePack = !s.keepHost && hostCount === s.chunks.length;
  for (let j = 0; j < G; j++) {
    const side = (t: 0 | 1) =>
      g.o('Gather', [g.o('Gather', [pack!, g.int64s([j])], { axis: 0 }), g.int64s([t])], { axis: 1 });
    // Gather with a 1-element index keeps the axis: [1, 1, KV, rows, hd] → squeeze both.
    const packed = pack ? ([0, 1] as const).map((t) => g.o('Squeeze', [side(t), g.int64s([0, 1])])) : null;
    const parts: [string[], string[]] = [[], []];
    let h = 0;
    s.chunks.forEach((form, i) => {
      for (const t of [0, 1] as const) {
        const name = `c${i}_${t ? 'v' : 'k'}_${j}`;
        if (form === 'device') {
          parts[t].push(g.input(name, c.t, [KV, `n${i}`, hd]));
          continue;
        }
        if (wholePack) continue;
        const rows = g.o('Slice', [
          packed![t],
          intAt(g, ints, 1 + 2 * h),
          intAt(g, ints, 2 + 2 * h),
          g.int64s([1]),
        ]);
        if (s.keepHost) {
          g.output(`h${i}_${t ? 'v' : 'k'}_${j}`, rows, c.t, [KV, `n${i}`, hd]);
          parts[t].push(`h${i}_${t ? 'v' : 'k'}_${j}`);
        } else parts[t].push(rows);
      }
      if (form === 'host') h++;
    });
    const [kc, vc] = wholePack ? packed! : [concat(g, parts[0], 1), concat(g, parts[1], 1)];
    const unsq = (x: string) => g.o('Unsqueeze', [x, g.int64s([0])]);
    const ks = [g.input(`bos_k_${j}`, c.t, [1, KV, 1, hd]), rotary(c, unsq(kc), shift)];
    const vs = [g.input(`bos_v_${j}`, c.t, [1, KV, 1, hd]), unsq(vc)];
    if (s.withQuestion) {
      const shape = g.o('Concat', [g.int64s([1, KV]), qLen, g.int64s([hd])], { axis: 0 });
      const zeros = g.o('Expand', [g.scalar(0, 'zero', c.t), shape]);
      ks.push(zeros);
      vs.push(zeros);
    }
    g.output(`k_${j}`, concat(g, ks, 2), c.t, [1, KV, 'N', hd]);
    g.output(`v_${j}`, concat(g, vs, 2), c.t, [1, KV, 'N', hd]);
  }
  return finish(c, []);
}
