/**
 * Mistral (MistralForCausalLM): the Llama block without biases, GQA, explicit head_dim allowed.
 *
 * Mistral's sliding-window attention is not implemented: the engine attends over the whole prompt. A
 * config is therefore accepted only where the window can never bind (`sliding_window` null, or at least
 * `max_position_embeddings`); Mistral-7B-v0.1 (window 4096, 32k positions) is refused, v0.2 and later load.
 */
import { UnsupportedModelError } from '../../errors.js';
import { llamaTensorNames, parseLlamaFamilyConfig } from './llama.js';
import type { ArchitectureSpec } from './registry.js';

export const mistral: ArchitectureSpec = {
  key: 'mistral',
  hfArchitectures: ['MistralForCausalLM'],
  modelTypes: ['mistral'],
  parseConfig(json, fallbacks) {
    const config = parseLlamaFamilyConfig(json, fallbacks, {
      key: 'mistral',
      defaultRopeTheta: 10000,
      defaultRmsNormEps: 1e-6,
      defaultMaxPositionEmbeddings: 4096 * 32,
      defaultBos: 1,
      defaultEos: [2],
      // transformers' MistralAttention has no biases whatever the config says.
      attentionBias: () => false,
    });
    const window = json.sliding_window;
    if (window !== undefined && window !== null) {
      if (typeof window !== 'number' || window < config.maxPositionEmbeddings) {
        throw new UnsupportedModelError(
          `sliding_window=${JSON.stringify(window)} is not supported: sliding-window attention is not ` +
            `implemented (accepted only when null or >= max_position_embeddings=${config.maxPositionEmbeddings})`,
        );
      }
    }
    return config;
  },
  tensorNames: llamaTensorNames,
};
