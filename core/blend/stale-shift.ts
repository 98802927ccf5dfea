/**
 * The stored rows' shared bias, removed. A chunk's cache was computed as if the chunk opened the document,
 * and that leaves a bias common to its rows: at stories260K's top layer the question scores a stored key
 * about one logit higher than the same token's full-prefill key, in most heads. Reuse shifts every row
 * alike and the softmax cancels it; blend corrects only the selected rows, which then lose attention to
 * the stored rows around them — most when the corrected rows are the ones the question reads. So before a
 * layer is recomputed, the selected tokens' fresh K/V against their stored rows estimate the bias (the
 * mean difference, keys compared before RoPE), and every stored row that stays is moved by it.
 */
import { rotateKeys } from '../kv/rope.js';
import type { Engine } from '../model/engine.js';
import type { KvCache } from '../model/host/kv-cache.js';
import type { ActiveTokens } from './steps.js';

/**
 * The estimate is a mean over the selected tokens, few of them at small ratios: it is shrunk toward no
 * shift by n / (n + SHIFT_PRIOR_TOKENS) for n tokens (chosen on generated stories260K sets from 2, 4, 8, 16
 * and 32: the fewest sets left further from full than reuse; docs/accuracy.md).
 */
export const SHIFT_PRIOR_TOKENS = 8;

/**
 * Move the stored rows at `layer` of `stale` (prompt indices) by the mean fresh-minus-stored difference of
 * the rows in `fresh` (prompt indices, with their fresh K/V at this layer), shrunk as above. Keys are
 * compared and moved before RoPE (each difference rotated back from its row's position, the mean rotated
 * to each stale row's); values as they are. Nothing moves when `fresh` is empty.
 */
export function shiftStaleRows(
  engine: Engine,
  cache: KvCache,
  layer: number,
  fresh: { rows: ArrayLike<number>; k: Float32Array; v: Float32Array },
  stale: ArrayLike<number>,
): void {
  const n = fresh.rows.length;
  if (n === 0 || stale.length === 0) return;
  const { numKvHeads: KV, headDim: hd, ropeLayout } = engine.config;
  const row = cache.rowSize;
  const dk = new Float32Array(n * row);
  const meanV = new Float32Array(row);
  const K = cache.keys[layer];
  const V = cache.values[layer];
  for (let i = 0; i < n; i++) {
    const at = fresh.rows[i] * row;
    for (let j = 0; j < row; j++) {
      dk[i * row + j] = fresh.k[i * row + j] - K[at + j];
      meanV[j] += (fresh.v[i * row + j] - V[at + j]) / n;
    }
  }
  rotateKeys(
    dk,
    n,
    KV,
    hd,
    ropeLayout,
    engine.invFreq,
    Array.from(fresh.rows, (p) => -p),
  );
  const meanK = new Float32Array(row);
  for (let i = 0; i < n; i++) for (let j = 0; j < row; j++) meanK[j] += dk[i * row + j] / n;
  const w = n / (n + SHIFT_PRIOR_TOKENS);
  for (let j = 0; j < row; j++) {
    meanK[j] *= w;
    meanV[j] *= w;
  }
  const shift = new Float32Array(stale.length * row);
  for (let s = 0; s < stale.length; s++) shift.set(meanK, s * row);
  rotateKeys(shift, stale.length, KV, hd, ropeLayout, engine.invFreq, stale);
  for (let s = 0; s < stale.length; s++) {
    const at = stale[s] * row;
    for (let j = 0; j < row; j++) {
      K[at + j] += shift[s * row + j];
      V[at + j] += meanV[j];
    }
  }
}

/** The active context tokens' fresh K/V at `layer` (projected from their input to it). */
export async function freshContextRows(
  engine: Engine,
  layer: number,
  active: ActiveTokens,
  count: number,
): Promise<{ k: Float32Array; v: Float32Array }> {
  const D = engine.config.hiddenSize;
  const ctx = active.indices.subarray(0, count);
  return engine.projectKv(layer, active.hidden.subarray(0, count * D), engine.rope(ctx));
}
