/**
 * CacheBlend's scoring on the device, as graph pieces of a stack (stack.ts): the question's attention to
 * the prompt's rows (the question-aware selections) and the shift of the stored rows that stay
 * (core/blend/stale-shift.ts). Each computes what the host computes from the same tensors, in fp32 where
 * it sums; only the scores come back.
 */
import { inverseFrequencies, ropeTables } from '../../../kv/rope.js';
import { devicePositions, ropeCaches, type Ctx } from './context.js';
import { groupedScores, type LayerCacheIo } from './attention.js';

/**
 * Attention weight each of the N key rows receives from the queries `q` [1, Tq, H*hd] (RoPE applied) over
 * `keys` [1, KV, N, hd] (a query head reads the KV head of its group), softmax per head and query, summed
 * over heads and queries: fp32 [N]. With `qPos` (fp32 [Tq], the queries' positions) a query sees only
 * rows at or before its position; without, every row (the last prompt token's view).
 */
export function attentionReceived(c: Ctx, q: string, keys: string, qPos: string | null): string {
  const { g, cfg } = c;
  const { numHeads: H, numKvHeads: KV } = cfg;
  const G = H / KV;
  // [1, KV, G*Tq, N] in fp32: the softmax and the sums run in fp32 whatever the compute precision.
  let scores = c.high(groupedScores(c, q, keys));
  if (qPos) {
    const n = g.o('Cast', [g.o('Gather', [g.o('Shape', [keys]), g.int64s([2])])], { to: 1 });
    const kPos = g.o('Range', [g.scalar(0, 'zero_f'), g.o('Squeeze', [n]), g.scalar(1, 'one_f')]);
    const later = g.o('Greater', [
      g.o('Unsqueeze', [kPos, g.int64s([0])]),
      g.o('Unsqueeze', [qPos, g.int64s([1])]),
    ]);
    const mask = g.o('Where', [later, g.scalar(-1e9, 'masked_f'), g.scalar(0, 'visible_f')]); // [Tq, N]
    const shape5 = g.o('Concat', [g.int64s([0, KV, G]), g.o('Shape', [mask])], { axis: 0 });
    scores = g.o('Add', [g.o('Reshape', [scores, shape5]), mask]);
  }
  const probs = g.o('Softmax', [scores], { axis: -1 });
  const rows = g.o('Concat', [g.int64s([-1]), g.o('Gather', [g.o('Shape', [keys]), g.int64s([2])])], {
    axis: 0,
  });
  return g.o('ReduceSum', [g.o('Reshape', [probs, rows]), g.int64s([0])], { keepdims: 0 });
}

/** RoPE by minus each position (the inverse rotation): the tables' sines negated, added once. */
function inverseRotary(c: Ctx, x: string, pos: string): string {
  const { g, cfg } = c;
  const name = 'rope_sin_inverse';
  if (!g.hasWeight(name)) {
    const P = devicePositions(cfg);
    const { sin } = ropeTables(
      inverseFrequencies(cfg),
      Int32Array.from({ length: P }, (_, i) => i),
    );
    c.constant(
      name,
      sin.map((s) => -s),
      [P, cfg.headDim / 2],
    );
  }
  const interleaved = cfg.ropeLayout === 'interleaved' ? 1 : 0;
  const inputs = [x, pos, ropeCaches(c).cos, name];
  return g.op('RotaryEmbedding', inputs, { interleaved }, 1, 'com.microsoft')[0];
}

/** Rows `rows` (int [A]) of a cache [1, KV, N, hd] as [1, A, KV*hd], fp32. */
function cacheRows(c: Ctx, cache: string, rows: string): string {
  const { g } = c;
  const at = g.o('Gather', [cache, rows], { axis: 2 });
  return c.high(g.o('Reshape', [g.o('Transpose', [at], { perm: [0, 2, 1, 3] }), g.int64s([0, 0, -1])]));
}

/**
 * The cache of a selective layer with its stale rows shifted (core/blend/stale-shift.ts): from the active
 * tokens' fresh rows `k`, `v` [1, A, KV*hd] (keys RoPE'd at their positions) and their rows in the cache,
 * the weighted sum (`shift_w` fp32 [A]: 1/(n + prior) for the n tokens that measure, 0 for the rest) of
 * the differences, keys rotated back to position 0 first; every row r of the cache then moves by
 * `shift_stale[r]` (fp32 [N], 1 for the stored rows that stay) times it, keys rotated to r.
 */
export function shiftStale(c: Ctx, io: LayerCacheIo, k: string, v: string): { k: string; v: string } {
  const { g, cfg } = c;
  const { numKvHeads: KV, headDim: hd } = cfg;
  const inputs = () => ({
    // [1, 1, A] and [N]
    w: g.o('Unsqueeze', [g.input('shift_w', 'float', ['A']), g.int64s([0, 1])]),
    stale: g.input('shift_stale', 'float', ['N']),
  });
  if (!c.memo.has('shift')) c.memo.set('shift', inputs());
  const { w, stale } = c.memo.get('shift') as ReturnType<typeof inputs>;
  const rows = c.ints.q_pos;
  const dk = g.o('Sub', [c.high(k), cacheRows(c, io.k!, rows)]);
  const meanK = g.o('MatMul', [w, c.high(inverseRotary(c, c.low(dk), c.positions!()))]); // [1, 1, KV*hd]
  const meanV = g.o('MatMul', [w, g.o('Sub', [c.high(v), cacheRows(c, io.v!, rows)])]);
  const n = g.o('Gather', [g.o('Shape', [io.k!]), g.int64s([2])]);
  const scalar = (t: string) => g.o('Squeeze', [t]);
  const range = g.o('Range', [scalar(g.int64s([0])), scalar(n), scalar(g.int64s([1]))]);
  const all = g.o('Unsqueeze', [range, g.int64s([0])]); // [1, N]: every row's position
  const wide = g.o('Expand', [meanK, g.o('Concat', [g.int64s([1]), n, g.int64s([KV * hd])], { axis: 0 })]);
  const rotated = c.high(
    g.op(
      'RotaryEmbedding',
      [c.low(wide), all, ropeCaches(c).cos, ropeCaches(c).sin],
      {
        interleaved: cfg.ropeLayout === 'interleaved' ? 1 : 0,
      },
      1,
      'com.microsoft',
    )[0],
  );
  const heads = (x: string) =>
    g.o('Transpose', [g.o('Reshape', [x, g.int64s([0, 0, KV, hd])])], { perm: [0, 2, 1, 3] });
  const shiftK = heads(g.o('Mul', [rotated, g.o('Unsqueeze', [stale, g.int64s([0, 2])])]));
  const shiftV = g.o('Mul', [heads(meanV), g.o('Unsqueeze', [stale, g.int64s([0, 1, 3])])]);
  return {
    k: c.low(g.o('Add', [c.high(io.k!), shiftK])),
    v: c.low(g.o('Add', [c.high(io.v!), shiftV])),
  };
}
