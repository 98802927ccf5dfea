/**
 * Llama (LlamaForCausalLM) and the config-parsing helpers shared by the Llama family (Mistral, Qwen2).
 *
 * Reads both config.json dialects: transformers v4 (`rope_theta`, `rope_scaling`, `torch_dtype`) and v5
 * (`rope_parameters` holding `rope_theta` and the scaling keys, `dtype`).
 */
import { ModelLoadError, UnsupportedModelError } from '../../errors.js';
import type { Llama3RopeScaling, ModelConfig } from '../types.js';
import type { ArchitectureSpec, ConfigFallbacks, HfConfigJson, TensorNames } from './registry.js';

// ---------------------------------------------------------------------------------------------------------
// Field readers

function describe(v: unknown): string {
  return v === undefined ? 'missing' : JSON.stringify(v);
}

/** A required positive integer. */
export function readPositiveInt(json: HfConfigJson, key: string, fallback?: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new ModelLoadError(`config.json: ${key} must be a positive integer, got ${describe(json[key])}`);
  }
  return v;
}

/** A required finite positive number. */
export function readPositiveNumber(json: HfConfigJson, key: string, fallback?: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ModelLoadError(`config.json: ${key} must be a positive number, got ${describe(json[key])}`);
  }
  return v;
}

export function readBool(json: HfConfigJson, key: string, fallback: boolean): boolean {
  const v = json[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean')
    throw new ModelLoadError(`config.json: ${key} must be a boolean, got ${describe(v)}`);
  return v;
}

function tokenId(v: unknown, key: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new ModelLoadError(`config.json: ${key} must be a token id, got ${describe(v)}`);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// Shared checks and parsers

/** The MLP must be SwiGLU without biases; quantized checkpoints are refused. */
export function checkCommonOptions(json: HfConfigJson): void {
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu' && act !== 'swish') {
    throw new UnsupportedModelError(`hidden_act=${describe(act)} is not supported (only silu)`);
  }
  if (readBool(json, 'mlp_bias', false)) {
    throw new UnsupportedModelError('mlp_bias=true is not supported (MLP projections without bias only)');
  }
  if (json.quantization_config !== undefined && json.quantization_config !== null) {
    throw new UnsupportedModelError('quantization_config is not supported (unquantized checkpoints only)');
  }
  const layerTypes = json.layer_types;
  if (Array.isArray(layerTypes) && layerTypes.some((t) => t !== 'full_attention')) {
    throw new UnsupportedModelError(
      `layer_types=${describe(layerTypes)} is not supported (full attention in every layer only)`,
    );
  }
}

/** RoPE base and scaling from `rope_parameters` (v5) or `rope_theta` + `rope_scaling` (v4). */
export function parseRope(
  json: HfConfigJson,
  defaultTheta: number,
): { ropeTheta: number; ropeScaling: Llama3RopeScaling | null } {
  const params = json.rope_parameters ?? json.rope_scaling ?? null;
  const optionName =
    json.rope_parameters !== undefined && json.rope_parameters !== null ? 'rope_parameters' : 'rope_scaling';
  if (params !== null && (typeof params !== 'object' || Array.isArray(params))) {
    throw new ModelLoadError(`config.json: ${optionName} must be an object, got ${describe(params)}`);
  }
  const p = (params ?? {}) as Record<string, unknown>;
  if (params !== null && p.rope_type === undefined && p.type === undefined && p.rope_theta === undefined) {
    // v5 per-layer-type parameters ({full_attention: {...}, sliding_attention: {...}}).
    throw new UnsupportedModelError(
      `${optionName}=${describe(params)} is not supported (one RoPE for all layers only)`,
    );
  }
  const theta = p.rope_theta ?? json.rope_theta ?? defaultTheta;
  if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0) {
    throw new ModelLoadError(`config.json: rope_theta must be a positive number, got ${describe(theta)}`);
  }
  const partial = p.partial_rotary_factor ?? json.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    throw new UnsupportedModelError(`partial_rotary_factor=${describe(partial)} is not supported (only 1)`);
  }
  const ropeType = p.rope_type ?? p.type ?? 'default';
  if (ropeType === 'default') return { ropeTheta: theta, ropeScaling: null };
  if (ropeType !== 'llama3') {
    throw new UnsupportedModelError(
      `${optionName}.rope_type=${describe(ropeType)} is not supported (only default and llama3)`,
    );
  }
  const num = (key: string): number => {
    const v = p[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new ModelLoadError(
        `config.json: ${optionName}.${key} must be a positive number, got ${describe(v)}`,
      );
    }
    return v;
  };
  const scaling: Llama3RopeScaling = {
    type: 'llama3',
    factor: num('factor'),
    lowFreqFactor: num('low_freq_factor'),
    highFreqFactor: num('high_freq_factor'),
    originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
  };
  if (!(scaling.highFreqFactor > scaling.lowFreqFactor)) {
    throw new ModelLoadError(
      `config.json: ${optionName}.high_freq_factor (${scaling.highFreqFactor}) must exceed low_freq_factor (${scaling.lowFreqFactor})`,
    );
  }
  const ignored = ['attention_factor', 'mscale', 'mscale_all_dim'].filter(
    (k) => p[k] !== undefined && p[k] !== 1,
  );
  if (ignored.length > 0) {
    throw new UnsupportedModelError(`${optionName}.${ignored[0]} is not supported with rope_type llama3`);
  }
  return { ropeTheta: theta, ropeScaling: scaling };
}

export function parseWeightDtype(json: HfConfigJson): ModelConfig['weightDtype'] {
  const key = json.dtype !== undefined ? 'dtype' : 'torch_dtype';
  const v = json[key];
  if (v === undefined || v === null || v === 'auto') return 'float32';
  switch (v) {
    case 'float32':
    case 'fp32':
      return 'float32';
    case 'float16':
    case 'fp16':
    case 'half':
      return 'float16';
    case 'bfloat16':
    case 'bf16':
      return 'bfloat16';
    default:
      throw new UnsupportedModelError(
        `${key}=${describe(v)} is not supported (float32, float16 or bfloat16)`,
      );
  }
}

export function parseTokenIds(
  json: HfConfigJson,
  fallbacks: ConfigFallbacks | undefined,
  defaults: { bos?: number; eos?: number[] },
): { bosTokenId: number; eosTokenIds: number[] } {
  const bosRaw = json.bos_token_id;
  const bosTokenId =
    bosRaw !== undefined && bosRaw !== null
      ? tokenId(bosRaw, 'bos_token_id')
      : (fallbacks?.bosTokenId ?? defaults.bos);
  if (bosTokenId === undefined) {
    throw new ModelLoadError('config.json: no bos_token_id, and the tokenizer names no bos_token');
  }
  const eosRaw = json.eos_token_id;
  let eosTokenIds: number[];
  if (eosRaw === undefined || eosRaw === null) {
    eosTokenIds = fallbacks?.eosTokenIds ?? defaults.eos ?? [];
  } else if (Array.isArray(eosRaw)) {
    eosTokenIds = eosRaw.map((v) => tokenId(v, 'eos_token_id'));
  } else {
    eosTokenIds = [tokenId(eosRaw, 'eos_token_id')];
  }
  return { bosTokenId, eosTokenIds: [...new Set(eosTokenIds)] };
}

export interface LlamaFamilyOptions {
  key: string;
  defaultRopeTheta: number;
  defaultRmsNormEps: number;
  defaultMaxPositionEmbeddings: number;
  defaultBos?: number;
  defaultEos?: number[];
  /** Whether q/k/v carry biases; by default read from `attention_bias` (Llama). */
  attentionBias?: (json: HfConfigJson) => boolean;
}

/** The config of any Llama-family model (pre-norm decoder, RMSNorm, SwiGLU MLP, RoPE in HF 'half' layout). */
export function parseLlamaFamilyConfig(
  json: HfConfigJson,
  fallbacks: ConfigFallbacks | undefined,
  opts: LlamaFamilyOptions,
): ModelConfig {
  checkCommonOptions(json);
  const hiddenSize = readPositiveInt(json, 'hidden_size');
  const numHeads = readPositiveInt(json, 'num_attention_heads');
  const numKvHeads = readPositiveInt(json, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ModelLoadError(
      `config.json: num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads})`,
    );
  }
  let headDim: number;
  if (json.head_dim !== undefined && json.head_dim !== null) {
    headDim = readPositiveInt(json, 'head_dim');
  } else {
    if (hiddenSize % numHeads !== 0) {
      throw new ModelLoadError(
        `config.json: hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads}) and no head_dim is given`,
      );
    }
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) throw new ModelLoadError(`config.json: head_dim (${headDim}) must be even for RoPE`);
  const { ropeTheta, ropeScaling } = parseRope(json, opts.defaultRopeTheta);
  const { bosTokenId, eosTokenIds } = parseTokenIds(json, fallbacks, {
    bos: opts.defaultBos,
    eos: opts.defaultEos,
  });
  return {
    architecture: opts.key,
    hiddenSize,
    intermediateSize: readPositiveInt(json, 'intermediate_size'),
    numLayers: readPositiveInt(json, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: readPositiveInt(json, 'vocab_size'),
    rmsNormEps: readPositiveNumber(json, 'rms_norm_eps', opts.defaultRmsNormEps),
    ropeTheta,
    ropeLayout: 'half',
    ropeScaling,
    attentionBias: opts.attentionBias ? opts.attentionBias(json) : readBool(json, 'attention_bias', false),
    tieWordEmbeddings: readBool(json, 'tie_word_embeddings', false),
    maxPositionEmbeddings: readPositiveInt(
      json,
      'max_position_embeddings',
      opts.defaultMaxPositionEmbeddings,
    ),
    bosTokenId,
    eosTokenIds,
    weightDtype: parseWeightDtype(json),
  };
}

/** Tensor names shared by LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM. */
export const llamaTensorNames: TensorNames = {
  embedTokens: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  lmHead: 'lm_head.weight',
  layer(i: number) {
    const p = `model.layers.${i}`;
    return {
      attnNorm: `${p}.input_layernorm.weight`,
      wq: `${p}.self_attn.q_proj.weight`,
      wk: `${p}.self_attn.k_proj.weight`,
      wv: `${p}.self_attn.v_proj.weight`,
      wo: `${p}.self_attn.o_proj.weight`,
      bq: `${p}.self_attn.q_proj.bias`,
      bk: `${p}.self_attn.k_proj.bias`,
      bv: `${p}.self_attn.v_proj.bias`,
      bo: `${p}.self_attn.o_proj.bias`,
      mlpNorm: `${p}.post_attention_layernorm.weight`,
      wGate: `${p}.mlp.gate_proj.weight`,
      wUp: `${p}.mlp.up_proj.weight`,
      wDown: `${p}.mlp.down_proj.weight`,
    };
  },
};

export const llama: ArchitectureSpec = {
  key: 'llama',
  hfArchitectures: ['LlamaForCausalLM'],
  modelTypes: ['llama'],
  parseConfig: (json, fallbacks) =>
    parseLlamaFamilyConfig(json, fallbacks, {
      key: 'llama',
      defaultRopeTheta: 10000,
      defaultRmsNormEps: 1e-6,
      defaultMaxPositionEmbeddings: 2048,
      defaultBos: 1,
      defaultEos: [2],
    }),
  tensorNames: llamaTensorNames,
};
