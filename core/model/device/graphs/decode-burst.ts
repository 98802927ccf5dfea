import type { ModelConfig, ModelWeights } from '../../types.js';
import type { WeightFormat } from '../../weights/format.js';
import { GraphBuilder } from '../../onnx/builder.js';
import { positionMask, type LayerCacheIo } from './attention.js';
import { Ctx, finish, type DeviceDtype, type DeviceGraph } from './context.js';
import { layerStack } from './layers.js';
import { logitsOfLastRow } from './stack.js';

/**
 * The packed integer input of a decode burst: the first token (the one host tensor its kernels read),
 * and for decomposed attention every step's position and the keys' positions after the last step.
 */
export function burstSegments(attention: 'fused' | 'decomposed'): string[] {
  return attention === 'decomposed' ? ['ids', 'q_pos', 'k_pos'] : ['ids'];
}

/**
 * Greedy decoding of `steps` tokens in one run: from the token in `ids` (int32 [1], packed), each step
 * runs every layer over one new token after the cache (`past_k_l` / `past_v_l`, then the previous step's),
 * picks the argmax of its logits on the device and feeds it to the next step. Only the tokens (`tokens`,
 * float [steps], exact) come back; the cache after the last step stays on the device (`k_l` / `v_l`), holding
 * the first token and every generated token but the last. Per step i, host tensors that the kernels read
 * on the host (no upload): seqlens_i int32 [1] and total_len_i int32 [] (GroupQueryAttention's lengths),
 * pos_i int64 [1, 1] (RotaryEmbedding's position, where the attention does not apply RoPE itself).
 * Everything else stays on the device: a value that went back to the host mid-run would stall the GPU.
 */
export function buildDecodeBurstGraph(
  cfg: ModelConfig,
  weights: ModelWeights,
  o: { dtype: DeviceDtype; steps: number; attention: 'fused' | 'decomposed'; weights?: WeightFormat },
): DeviceGraph {
  const { numKvHeads: KV, headDim: hd, numLayers: L, hiddenSize: D } = cfg;
  const g = new GraphBuilder(`burst_${o.steps}`);
  const c = new Ctx(g, cfg, o.dtype, o.weights);
  const segs = burstSegments(o.attention);
  const parts = g.op(
    'Split',
    [g.input('ints', 'int32', ['M']), g.input('int_sizes', 'int64', [segs.length])],
    { axis: 0 },
    segs.length,
  );
  c.ints = Object.fromEntries(segs.map((name, i) => [name, parts[i]]));
  const table = c.weight('embed', () => weights.embedTokens.f32(), [cfg.vocabSize, D]);
  let token = c.ints.ids;
  let kv: { k: string[]; v: string[] } = {
    k: Array.from({ length: L }, (_, l) => g.input(`past_k_${l}`, c.t, [1, KV, 'S', hd])),
    v: Array.from({ length: L }, (_, l) => g.input(`past_v_${l}`, c.t, [1, KV, 'S', hd])),
  };
  const tokens: string[] = [];
  for (let i = 0; i < o.steps; i++) {
    let pos: string | null = null;
    c.positions = () => (pos ??= g.input(`pos_${i}`, 'int64', [1, 1]));
    const x = c.high(g.o('Reshape', [g.o('Gather', [table, token], { axis: 0 }), g.int64s([1, 1, D])]));
    const next: typeof kv = { k: [], v: [] };
    const out = layerStack(
      c,
      weights,
      { from: 0, to: L, kvOnly: false },
      x,
      (l) => ({ mode: 'append', k: kv.k[l], v: kv.v[l], ...burstAttention(c, o, i) }),
      (l, r) => {
        next.k.push(r.k);
        next.v.push(r.v);
        // Every step's cache is an output: onnxruntime infers one symbolic length for all of them (the
        // past's) and would otherwise reuse a shorter step's buffer for a longer one.
        if (i < o.steps - 1) {
          g.output(`k_${l}_step${i}`, r.k, c.t, [1, KV, `R${i}`, hd]);
          g.output(`v_${l}_step${i}`, r.v, c.t, [1, KV, `R${i}`, hd]);
        }
      },
    );
    kv = next;
    token = g.o('ArgMax', [logitsOfLastRow(c, weights, out)], { axis: -1, keepdims: 0 });
    // The list goes back as floats (exact below 2^24): onnxruntime's WebGPU provider concatenates and
    // casts no int64, and a kernel on the host would bring each token back mid-run. A gather from a
    // table of the ids does it in one kernel.
    tokens.push(g.o('Gather', [idTable(c), token], { axis: 0 }));
  }
  kv.k.forEach((t, l) => g.output(`k_${l}`, t, c.t, [1, KV, 'R', hd]));
  kv.v.forEach((t, l) => g.output(`v_${l}`, t, c.t, [1, KV, 'R', hd]));
  const all = tokens.length === 1 ? tokens[0] : g.o('Concat', tokens, { axis: 0 });
  g.output('tokens', all, 'float', [o.steps]);
  return finish(c, ['tokens']);
}

/** Every token id as a float ([vocab]), added once. */
function idTable(c: Ctx): string {
  const V = c.cfg.vocabSize;
  if (!c.memo.has('ids')) {
    c.memo.set(
      'ids',
      c.g.weight(
        'token_ids',
        Float32Array.from({ length: V }, (_, i) => i),
        [V],
      ),
    );
  }
  return c.memo.get('ids') as string;
}

/** Step i's attention inputs in a decode burst (see buildDecodeBurstGraph), declared once per step. */
function burstAttention(
  c: Ctx,
  o: { steps: number; attention: 'fused' | 'decomposed' },
  i: number,
): Omit<LayerCacheIo, 'mode' | 'k' | 'v'> {
  const { g } = c;
  const key = `burst_${i}`;
  const known = c.memo.get(key) as Omit<LayerCacheIo, 'mode' | 'k' | 'v'> | undefined;
  if (known) return known;
  let io: Omit<LayerCacheIo, 'mode' | 'k' | 'v'>;
  if (o.attention === 'fused') {
    io = { seqlens: g.input(`seqlens_${i}`, 'int32', [1]), total: g.input(`total_len_${i}`, 'int32', []) };
  } else {
    const qPos = g.o('Slice', [c.ints.q_pos, g.int64s([i]), g.int64s([i + 1])]);
    const drop = o.steps - 1 - i; // the later steps' keys
    const keys = drop === 0 ? c.ints.k_pos : g.o('Slice', [c.ints.k_pos, g.int64s([0]), g.int64s([-drop])]);
    io = { mask: positionMask(g, qPos, keys) };
  }
  c.memo.set(key, io);
  return io;
}
