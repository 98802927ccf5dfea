/**
 * Qwen2 (Qwen2ForCausalLM): the Llama block with biases on the q, k and v projections (always present;
 * o_proj has none). Sliding-window attention (`use_sliding_window: true`) is not implemented and is refused
 * unless the window can never bind.
 */
import { UnsupportedModelError } from '../../errors.js';
import { llamaTensorNames, parseLlamaFamilyConfig, readBool } from './llama.js';
import type { ArchitectureSpec } from './registry.js';

export const qwen2: ArchitectureSpec = {
  key: 'qwen2',
  hfArchitectures: ['Qwen2ForCausalLM'],
  modelTypes: ['qwen2'],
  parseConfig(json, fallbacks) {
    const config = parseLlamaFamilyConfig(json, fallbacks, {
      key: 'qwen2',
      defaultRopeTheta: 10000,
      defaultRmsNormEps: 1e-6,
      defaultMaxPositionEmbeddings: 32768,
      attentionBias: () => true,
    });
    if (readBool(json, 'use_mrope', false)) {
      throw new UnsupportedModelError('use_mrope=true is not supported (multimodal RoPE)');
    }
    if (readBool(json, 'use_sliding_window', false)) {
      const window = json.sliding_window;
      const neverBinds =
        window === null || (typeof window === 'number' && window >= config.maxPositionEmbeddings);
      if (!neverBinds) {
        throw new UnsupportedModelError(
          `use_sliding_window=true (sliding_window=${JSON.stringify(window)}) is not supported: ` +
            'sliding-window attention is not implemented',
        );
      }
    }
    return config;
  },
  tensorNames: llamaTensorNames,
};
