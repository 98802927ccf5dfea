import type { LayerWeights, ModelConfig, ModelWeights } from '../../types.js';
import { GraphBuilder } from '../../onnx/builder.js';
import { attentionInputs, cacheInputs } from './attention.js';
import { attentionReceived, shiftStale } from './blend-scores.js';
import {
  Ctx,
  finish,
  intSegments,
  type DeviationMetric,
  type DeviceGraph,
  type StackGraphOptions,
} from './context.js';
import { layerStack, norm } from './layers.js';
import { projectQkv, toHeads } from './projections.js';

/** The stack's input hidden states [B, T, D] fp32. */
function stackInput(c: Ctx, weights: ModelWeights, input: StackGraphOptions['input']): string {
  const { g, cfg } = c;
  const D = cfg.hiddenSize;
  if (input === 'ids') {
    // ids [B*T] → [B, T]; B is the length of seqlens_k (one per sequence).
    const B = g.o('Shape', [c.lengths().seqlens]);
    const ids = g.o('Reshape', [c.ints.ids, g.o('Concat', [B, g.int64s([-1])], { axis: 0 })]);
    const table = c.weight('embed', () => weights.embedTokens.f32(), [cfg.vocabSize, D]);
    return c.high(g.o('Gather', [table, ids], { axis: 0 }));
  }
  const hidden = g.input('hidden_in', 'float', [1, 'T0', D]);
  return g.o('Gather', [hidden, c.ints.rows], { axis: 1 });
}

export function logitsOfLastRow(c: Ctx, weights: ModelWeights, x: string): string {
  const { g, cfg } = c;
  const { hiddenSize: D, vocabSize: V } = cfg;
  const last = g.o('Slice', [x, g.int64s([-1]), g.int64s([2 ** 53]), g.int64s([1])]);
  const h = norm(c, last, 'final_norm', weights.finalNorm);
  const logits = c.linear(h, 'lm_head_t', [{ w: weights.lmHead, out: V }], D);
  return g.o('Reshape', [c.high(logits), g.int64s([0, V])]);
}

/**
 * CacheBlend's deviation at layer `layer` (x is its input) of the first C tokens, whose cache rows are
 * `ctx_rows` int64 [C]: squared L2 distance of their fresh K (V, or both) from rows ctx_rows of the
 * cached `cached_k` / `cached_v`. With `question`, every row of x is projected (queries too): the fresh
 * rows replace the cached layer's rows from `past_rows` on (`check_k`, `check_v`), and the rows after the
 * first C (the question) attend over them (`attn`).
 */
function deviation(
  c: Ctx,
  w: LayerWeights,
  layer: number,
  x: string,
  metric: DeviationMetric,
  question: boolean,
) {
  const { g, cfg } = c;
  const { numKvHeads: KV, headDim: hd } = cfg;
  const rows = c.ints.ctx_rows;
  const count = g.o('Shape', [rows]);
  const first = (t: string) => g.o('Slice', [t, g.int64s([0]), count, g.int64s([1])]);
  // Declared where first read, so a deviation-only graph takes only the cached layer its metric reads.
  const declared = new Map<string, string>();
  const cached = (name: 'cached_k' | 'cached_v') => {
    if (!declared.has(name)) declared.set(name, g.input(name, c.t, [1, KV, 'N', hd]));
    return declared.get(name)!;
  };
  let fresh: { k: string; v: string };
  if (question) {
    const h = norm(c, x, `l${layer}.attn_norm`, w.attnNorm);
    const all = projectQkv(c, w, `l${layer}`, h, true);
    const below = (t: string) => g.o('Slice', [t, g.int64s([0]), c.pastRows(), g.int64s([2])]);
    const check = (cached: string, t: string) =>
      g.o('Concat', [below(cached), toHeads(c, t, KV)], { axis: 2 });
    const keys = check(cached('cached_k'), all.k);
    g.output('check_k', keys, c.t, [1, KV, 'N', hd]);
    g.output('check_v', check(cached('cached_v'), all.v), c.t, [1, KV, 'N', hd]);
    const last = (t: string) => g.o('Slice', [t, count, g.int64s([2 ** 53]), g.int64s([1])]);
    const qPos = g.o('Cast', [g.o('Reshape', [last(c.positions!()), g.int64s([-1])])], { to: 1 });
    g.output('attn', attentionReceived(c, last(all.q!), keys, qPos), 'float', ['N']);
    fresh = { k: first(all.k), v: first(all.v) };
  } else {
    const h = norm(c, first(x), `l${layer}.attn_norm`, w.attnNorm);
    fresh = projectQkv(c, w, `l${layer}`, h, false, first(c.positions!()));
  }
  const cachedRows = (name: 'cached_k' | 'cached_v') => g.o('Gather', [cached(name), rows], { axis: 2 });
  const sq = (a: string, b: string) => {
    const d = g.o('Sub', [c.high(toHeads(c, a, KV)), c.high(b)]);
    return g.o('ReduceSum', [g.o('Mul', [d, d]), g.int64s([0, 1, 3])], { keepdims: 0 });
  };
  const parts: string[] = [];
  if (metric !== 'v') parts.push(sq(fresh.k, cachedRows('cached_k')));
  if (metric !== 'k') parts.push(sq(fresh.v, cachedRows('cached_v')));
  return parts.length === 1 ? parts[0] : g.o('Add', parts);
}

/**
 * A stack of decoder layers (see StackGraphOptions). Inputs: ids [B, T] or hidden_in + rows; pos_ids
 * int64 [1, T] (RoPE positions); none/append: seqlens_k int32 [B] and total_len int32 [] (cache rows after
 * the run, minus one, and the total); scatter: q_pos/k_pos int32 for the mask, row_new/row_src. Outputs:
 * logits, hidden, dev, and k_l/v_l [B, KV, rows, hd], the layer's cache after the run.
 */
export function buildStackGraph(cfg: ModelConfig, weights: ModelWeights, o: StackGraphOptions): DeviceGraph {
  const { numKvHeads: KV, headDim: hd, hiddenSize: D, vocabSize: V } = cfg;
  const g = new GraphBuilder(`stack_${o.from}_${o.to}`);
  const c = new Ctx(g, cfg, o.dtype, o.weights);
  const segs = intSegments(o);
  const parts = g.op(
    'Split',
    [g.input('ints', 'int32', ['M']), g.input('int_sizes', 'int64', [segs.length])],
    { axis: 0 },
    segs.length,
  );
  c.ints = Object.fromEntries(segs.map((name, i) => [name, parts[i]]));
  let x = stackInput(c, weights, o.input);
  // RotaryEmbedding wants one row of positions per sequence; declared only where a kernel reads them.
  let pos: string | null = null;
  c.positions = () => {
    if (!pos) {
      const batch = g.o('Slice', [g.o('Shape', [x]), g.int64s([0]), g.int64s([1])]);
      pos = g.o('Expand', [
        g.input('pos_ids', 'int64', [1, 'T']),
        g.o('Concat', [batch, g.int64s([1])], { axis: 0 }),
      ]);
    }
    return pos;
  };
  const shared = attentionInputs(c, o);
  if (o.shiftStale) shared.adjust = (io, k, v) => shiftStale(c, io, k, v);
  const kvOnly = o.cache === 'none' && !o.head && !o.emitHidden && !o.deviation;
  let look: string | null = null;
  x = layerStack(
    c,
    weights,
    { from: o.from, to: o.to, kvOnly },
    x,
    (l) => cacheInputs(c, o, l, shared),
    (l, r) => {
      g.output(`k_${l}`, r.k, c.t, ['B', KV, 'R', hd]);
      g.output(`v_${l}`, r.v, c.t, ['B', KV, 'R', hd]);
      if (!o.lookahead) return;
      // The last active row is the prompt's last token: it sees every row.
      const q = g.o('Slice', [r.q!, g.int64s([-1]), g.int64s([2 ** 53]), g.int64s([1])]);
      const at = attentionReceived(c, q, r.k, null);
      look = look ? g.o('Add', [look, at]) : at;
    },
  );
  if (look) g.output('look', look, 'float', ['N']);
  if (o.deviation) {
    const dev = deviation(c, weights.layers[o.to], o.to, x, o.deviation, !!o.questionAttention);
    g.output('dev', dev, 'float', ['C']);
  }
  if (o.emitHidden) g.output('hidden', x, 'float', ['B', 'T', D]);
  if (o.head) g.output('logits', logitsOfLastRow(c, weights, x), 'float', ['B', V]);
  return finish(c, ['logits', 'dev', 'attn', 'look']);
}
