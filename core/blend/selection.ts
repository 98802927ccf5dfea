/**
 * How blend picks the context tokens to recompute at the check layer: by fresh-vs-cached deviation
 * (CacheBlend), by the question's attention to the context (ProphetKV, InfoFlow KV), or half by each; the
 * first tokens of every chunk (attention sinks, as EPIC recomputes) can be forced in; `fused` ranks by
 * reciprocal rank fusion of the question's two attentions and deviation. Every strategy spends
 * the same budget: at most ratio × context tokens.
 */
import type { AttentionRequest, AttentionSource, DeviationMetric, SelectionStrategy } from './types.js';

/** Deviation of each listed token: squared L2 distance of fresh vs cached rows (K, V or both). */
export function deviations(
  metric: DeviationMetric,
  rowSize: number,
  fresh: { k: Float32Array; v: Float32Array },
  cachedK: Float32Array,
  cachedV: Float32Array,
  rows: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    let d = 0;
    const f = i * rowSize;
    const c = rows[i] * rowSize;
    if (metric !== 'v') for (let j = 0; j < rowSize; j++) d += (fresh.k[f + j] - cachedK[c + j]) ** 2;
    if (metric !== 'k') for (let j = 0; j < rowSize; j++) d += (fresh.v[f + j] - cachedV[c + j]) ** 2;
    out[i] = d;
  }
  return out;
}

/** Indices into `scores`, highest score first; equal scores keep index order. */
function byScore(scores: Float64Array): number[] {
  return Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b);
}

/** Indices (into `scores`) of the `count` largest scores, returned in ascending index order. */
export function topK(scores: Float64Array, count: number): number[] {
  return byScore(scores)
    .slice(0, count)
    .sort((a, b) => a - b);
}

/** Context tokens a ratio allows: at most ratio × context (the epsilon absorbs 0.15 × 20 = 2.9999…). */
export function selectionBudget(ratio: number, contextTokens: number): number {
  return Math.min(contextTokens, Math.floor(ratio * contextTokens + 1e-9));
}

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

/**
 * Attention of the question to each context token at one layer: every question token's queries (q,
 * [Tq, heads, headDim], RoPE applied) attend causally over the prompt's keys (`keys`, [N, kvHeads,
 * headDim] in prompt order, RoPE applied; a query head reads the KV head of its group); the softmax weight
 * each context row [contextStart, contextEnd) receives is summed over heads and question tokens. BOS and
 * the prefix take part in the softmax (they absorb much of it) but are not scored.
 */
export function questionAttention(
  shape: AttentionShape,
  q: Float32Array,
  qPositions: ArrayLike<number>,
  keys: Float32Array,
  contextStart: number,
  contextEnd: number,
): Float64Array {
  const { numHeads: H, numKvHeads: KV, headDim: hd } = shape;
  const G = H / KV;
  const scale = 1 / Math.sqrt(hd);
  const out = new Float64Array(contextEnd - contextStart);
  const logits = new Float64Array(keys.length / (KV * hd));
  for (let t = 0; t < qPositions.length; t++) {
    const n = qPositions[t] + 1; // causal: positions 0…p
    for (let h = 0; h < H; h++) {
      const qo = (t * H + h) * hd;
      const kvh = Math.floor(h / G);
      let max = -Infinity;
      for (let j = 0; j < n; j++) {
        const ko = (j * KV + kvh) * hd;
        let s = 0;
        for (let d = 0; d < hd; d++) s += q[qo + d] * keys[ko + d];
        logits[j] = s * scale;
        if (logits[j] > max) max = logits[j];
      }
      let sum = 0;
      for (let j = 0; j < n; j++) sum += logits[j] = Math.exp(logits[j] - max);
      for (let j = contextStart; j < Math.min(n, contextEnd); j++) out[j - contextStart] += logits[j] / sum;
    }
  }
  return out;
}

/**
 * Context indices of the first `sinkTokens` tokens of every chunk, ordered so a budget too small for all
 * keeps each chunk's first token before any chunk's second.
 */
export function sinkIndices(chunkLengths: readonly number[], sinkTokens: number): number[] {
  const starts: number[] = [];
  chunkLengths.reduce((at, n) => (starts.push(at), at + n), 0);
  const out: number[] = [];
  for (let t = 0; t < sinkTokens; t++) {
    chunkLengths.forEach((n, c) => t < n && out.push(starts[c] + t));
  }
  return out;
}

/**
 * The check layer's scores: deviation of every context token, the question's attention when asked (at the
 * check layer, or the lookahead's when that is the source), and the lookahead's beside it for `fused`.
 */
export interface CheckScores {
  deviation: Float64Array;
  attention: Float64Array | null;
  lookahead?: Float64Array | null;
}

/** Whether a strategy needs the question's attention at the check layer. */
export function needsAttention(strategy: SelectionStrategy): boolean {
  return strategy !== 'deviation';
}

/**
 * Where question attention is measured unless told otherwise: the lookahead, which beats the check layer
 * for `question` and `combined` alike on the development sets of both models (docs/accuracy.md).
 */
export const DEFAULT_ATTENTION: AttentionSource = 'lookahead';

/**
 * The attention a strategy asks the check layer for: none for deviation, both for `fused`, else the
 * requested source (DEFAULT_ATTENTION unless told).
 */
export function attentionRequest(
  strategy: SelectionStrategy,
  attention: AttentionSource | undefined,
): AttentionRequest | null {
  if (strategy === 'fused') return 'both';
  return needsAttention(strategy) ? (attention ?? DEFAULT_ATTENTION) : null;
}

/**
 * The constant of reciprocal rank fusion (score Σ 1/(k + rank), rank from 1). Chosen on generated
 * development sets, not on the reported ones (docs/accuracy.md, "How defaults are chosen").
 */
export const FUSION_K = 10;

/** Reciprocal rank fusion of several scores of the same tokens (higher score = better rank). */
export function rankFusion(k: number, ...scores: Float64Array[]): Float64Array {
  const out = new Float64Array(scores[0].length);
  for (const s of scores) byScore(s).forEach((i, rank) => (out[i] += 1 / (k + rank + 1)));
  return out;
}

/**
 * The context tokens (indices into the scores, ascending) a strategy recomputes: the sinks first (as many
 * as the budget holds), then the highest scores of the strategy among the rest; `combined` takes half of
 * what is left by attention, then fills the budget by deviation; `fused` takes the best fused ranks. Never
 * more than `budget`.
 */
export function selectContext(
  strategy: SelectionStrategy,
  budget: number,
  scores: CheckScores,
  sinks: readonly number[] = [],
): number[] {
  const chosen = new Set<number>(sinks.slice(0, Math.max(0, budget)));
  const take = (s: Float64Array | null, count: number) => {
    if (!s) throw new Error(`selection "${strategy}" needs the question's attention`);
    if (count <= 0) return;
    const idx = byScore(s).filter((i) => !chosen.has(i));
    for (const i of idx.slice(0, count)) chosen.add(i);
  };
  const rest = budget - chosen.size;
  if (strategy === 'deviation') take(scores.deviation, rest);
  else if (strategy === 'question') take(scores.attention, rest);
  else if (strategy === 'fused') {
    if (!scores.attention || !scores.lookahead) throw new Error('selection "fused" needs both attentions');
    take(rankFusion(FUSION_K, scores.attention, scores.lookahead, scores.deviation), rest);
  } else {
    take(scores.attention, Math.ceil(rest / 2));
    take(scores.deviation, budget - chosen.size);
  }
  return [...chosen].sort((a, b) => a - b);
}
