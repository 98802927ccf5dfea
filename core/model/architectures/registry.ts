/**
 * Hugging Face architectures this engine runs. Each spec turns a `config.json` into a ModelConfig and names
 * the checkpoint tensors that make up each LayerWeights field. A config whose architecture is not listed here
 * is refused with UnsupportedModelError: the engine never runs a model it does not implement.
 */
import { UnsupportedModelError } from '../../errors.js';
import type { ModelConfig } from '../types.js';
import { llama } from './llama.js';
import { mistral } from './mistral.js';
import { qwen2 } from './qwen2.js';

/** A parsed `config.json`. */
export type HfConfigJson = Record<string, unknown>;

/** Values to use where `config.json` lacks them (taken from tokenizer_config.json by the loader). */
export interface ConfigFallbacks {
  bosTokenId?: number;
  eosTokenIds?: number[];
}

/** Checkpoint tensor names of one decoder layer, by LayerWeights field. */
export interface LayerTensorNames {
  attnNorm: string;
  wq: string;
  wk: string;
  wv: string;
  wo: string;
  bq: string;
  bk: string;
  bv: string;
  /** o_proj bias: LayerWeights has no place for it, so a checkpoint carrying a non-zero one is refused. */
  bo: string;
  mlpNorm: string;
  wGate: string;
  wUp: string;
  wDown: string;
}

export interface TensorNames {
  embedTokens: string;
  finalNorm: string;
  /** Read only when the embeddings are not tied. */
  lmHead: string;
  layer(i: number): LayerTensorNames;
}

export interface ArchitectureSpec {
  /** Registry key, stored as ModelConfig.architecture. */
  key: string;
  /** Class names in config.json's `architectures`, e.g. 'LlamaForCausalLM'. */
  hfArchitectures: readonly string[];
  /** config.json's `model_type`, used when `architectures` is absent. */
  modelTypes: readonly string[];
  /** Normalize a config.json; throws UnsupportedModelError naming any option the engine does not implement. */
  parseConfig(configJson: HfConfigJson, fallbacks?: ConfigFallbacks): ModelConfig;
  tensorNames: TensorNames;
}

const SPECS: ArchitectureSpec[] = [llama, mistral, qwen2];

export function listArchitectures(): readonly ArchitectureSpec[] {
  return SPECS;
}

export function getArchitectureByKey(key: string): ArchitectureSpec {
  const spec = SPECS.find((s) => s.key === key);
  if (!spec) throw new UnsupportedModelError(`unknown architecture key '${key}'`);
  return spec;
}

/**
 * The spec for a config.json: by its `architectures` class name, else by `model_type`. Refuses unknown
 * architectures with the list of supported ones.
 */
export function findArchitecture(configJson: HfConfigJson): ArchitectureSpec {
  const archs = configJson.architectures;
  const supported = SPECS.flatMap((s) => s.hfArchitectures).join(', ');
  if (Array.isArray(archs) && archs.length > 0) {
    for (const a of archs) {
      const spec = SPECS.find((s) => s.hfArchitectures.includes(String(a)));
      if (spec) return spec;
    }
    throw new UnsupportedModelError(
      `unsupported architecture ${archs.map((a) => String(a)).join(', ')} (supported: ${supported})`,
    );
  }
  const modelType = configJson.model_type;
  if (typeof modelType === 'string') {
    const spec = SPECS.find((s) => s.modelTypes.includes(modelType));
    if (spec) return spec;
    throw new UnsupportedModelError(`unsupported model_type '${modelType}' (supported: ${supported})`);
  }
  throw new UnsupportedModelError(
    `config.json names no architectures or model_type (supported: ${supported})`,
  );
}

/** findArchitecture + parseConfig. */
export function parseHfConfig(configJson: HfConfigJson, fallbacks?: ConfigFallbacks): ModelConfig {
  return findArchitecture(configJson).parseConfig(configJson, fallbacks);
}
