import { createHash } from 'node:crypto';
import { layerTensors, type ModelConfig, type ModelWeights } from './types.js';
import type { Weight } from './weights/weight.js';

/**
 * sha256 over the normalized config and every weight's stored bytes: two models share KV only if this
 * matches. Checkpoint weights are read one at a time (a model is never held whole to be hashed).
 */
export function fingerprintModel(config: ModelConfig, weights: ModelWeights): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(config));
  const add = (w: Weight | null) => {
    if (w) hash.update(w.raw());
  };
  add(weights.embedTokens);
  for (const l of weights.layers) {
    for (const a of layerTensors(l)) add(a);
  }
  add(weights.finalNorm);
  if (weights.lmHead !== weights.embedTokens) add(weights.lmHead);
  return hash.digest('hex');
}
