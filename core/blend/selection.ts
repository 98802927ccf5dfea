/** How CacheBlend picks the tokens to recompute: fresh-vs-cached deviation, then the largest few. */
import type { DeviationMetric } from './types.js';

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

/** Indices (into `scores`) of the `count` largest scores, returned in ascending index order. */
export function topK(scores: Float64Array, count: number): number[] {
  const idx = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b);
  return idx.slice(0, count).sort((a, b) => a - b);
}
