import type { ModelConfig, RopeLayout } from '../model/types.js';

/**
 * RoPE tables and the re-encoding of cached keys to new positions.
 *
 * RoPE rotates each pair of a head's dimensions by angle pos * f_i. Rotations compose, so a key cached at
 * position p becomes the key at p + δ by one more rotation of δ * f_i: CacheBlend moves a chunk's cache
 * from where it was precomputed to where the chunk sits in the prompt without recomputing it.
 */

/** Inverse frequencies f_i = theta^(-2i/d), with Llama 3's frequency-dependent scaling when configured. */
export function inverseFrequencies(
  cfg: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>,
): Float64Array {
  const half = cfg.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim);
  const s = cfg.ropeScaling;
  if (s) {
    // Same piecewise rule as Hugging Face's _compute_llama3_parameters.
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] = inv[i] / s.factor;
      else if (wavelen >= highWavelen) {
        const smooth =
          (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
      }
    }
  }
  return inv;
}

/** cos and sin of pos * f_i for each position: two [T, headDim/2] tables. */
export function ropeTables(
  invFreq: Float64Array,
  positions: ArrayLike<number>,
): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const cos = new Float32Array(positions.length * half);
  const sin = new Float32Array(positions.length * half);
  for (let t = 0; t < positions.length; t++) {
    for (let i = 0; i < half; i++) {
      const a = positions[t] * invFreq[i];
      cos[t * half + i] = Math.cos(a);
      sin[t * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/**
 * Rotate keys [nTokens, kvHeads, headDim] in place by `delta` positions (a number for all tokens, or one
 * per token). delta may be negative. Works on any layer's keys: every layer uses the same RoPE.
 */
export function rotateKeys(
  keys: Float32Array,
  nTokens: number,
  kvHeads: number,
  headDim: number,
  layout: RopeLayout,
  invFreq: Float64Array,
  delta: number | ArrayLike<number>,
): void {
  const half = headDim / 2;
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  let lastDelta = NaN;
  for (let t = 0; t < nTokens; t++) {
    const d = typeof delta === 'number' ? delta : delta[t];
    if (d === 0) continue;
    if (d !== lastDelta) {
      for (let i = 0; i < half; i++) {
        cos[i] = Math.cos(d * invFreq[i]);
        sin[i] = Math.sin(d * invFreq[i]);
      }
      lastDelta = d;
    }
    for (let h = 0; h < kvHeads; h++) {
      const base = (t * kvHeads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const ia = layout === 'half' ? base + i : base + 2 * i;
        const ib = layout === 'half' ? base + i + half : base + 2 * i + 1;
        const a = keys[ia];
        const b = keys[ib];
        keys[ia] = a * cos[i] - b * sin[i];
        keys[ib] = a * sin[i] + b * cos[i];
      }
    }
  }
}
