import { createHash } from 'node:crypto';
import { layerTensors, type ModelConfig, type ModelWeights } from './types.js';

/** sha256 over the normalized config and every weight's bytes: two models share KV only if this matches. */
export function fingerprintModel(config: ModelConfig, weights: ModelWeights): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(config));
  const add = (a: Float32Array | null) => {
    if (a) hash.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  };
  add(weights.embedTokens);
  for (const l of weights.layers) {
    for (const a of layerTensors(l)) add(a);
  }
  add(weights.finalNorm);
  if (weights.lmHead !== weights.embedTokens) add(weights.lmHead);
  return hash.digest('hex');
}
