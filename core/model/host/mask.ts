/** Additive attention mask value for "may not attend"; finite so a WebGPU softmax never sees -inf - -inf. */
export const MASKED = -1e9;

/**
 * Builds [T, S+T] additive masks: query i (at position qPos[i]) may attend key j when key j's position is
 * not after qPos[i]. Keys are the S past rows followed by the T new rows. `excludedPast[j] = 1` hides past
 * row j from every query (CacheBlend: a stale cached row whose fresh replacement is among the new rows).
 */
export function buildMask(
  qPos: ArrayLike<number>,
  pastPos: ArrayLike<number>,
  excludedPast?: Uint8Array,
): Float32Array {
  const T = qPos.length;
  const S = pastPos.length;
  const W = S + T;
  const mask = new Float32Array(T * W);
  for (let i = 0; i < T; i++) {
    const row = i * W;
    const p = qPos[i];
    for (let j = 0; j < S; j++) {
      if (pastPos[j] > p || (excludedPast && excludedPast[j])) mask[row + j] = MASKED;
    }
    for (let j = 0; j < T; j++) if (qPos[j] > p) mask[row + S + j] = MASKED;
  }
  return mask;
}
