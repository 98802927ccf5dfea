import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelLoadError, UnsupportedModelError } from '../../core/errors.js';
import {
  findArchitecture,
  getArchitectureByKey,
  listArchitectures,
  parseHfConfig,
  type HfConfigJson,
} from '../../core/model/architectures/registry.js';
import { HF_FIXTURES_DIR, HF_FIXTURE_NAMES } from '../helpers/hf-fixtures.js';

/** config.json of Llama-3.1-8B as published (transformers v4 dialect). */
const LLAMA31_8B: HfConfigJson = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 8192,
    rope_type: 'llama3',
  },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  use_cache: true,
  vocab_size: 128256,
};

/** Qwen2.5-0.5B (v4 dialect). */
const QWEN25_05B: HfConfigJson = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: 'silu',
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

/** Mistral-7B-v0.3 (v4 dialect, no sliding window). */
const MISTRAL_7B_V03: HfConfigJson = {
  architectures: ['MistralForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: 'mistral',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 1000000.0,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  vocab_size: 32768,
};

const with_ = (base: HfConfigJson, patch: HfConfigJson): HfConfigJson => ({
  ...structuredClone(base),
  ...patch,
});

function expectUnsupported(json: HfConfigJson, option: string | RegExp) {
  let err: unknown;
  try {
    parseHfConfig(json);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UnsupportedModelError);
  if (typeof option === 'string') expect((err as Error).message).toContain(option);
  else expect((err as Error).message).toMatch(option);
}

describe('architecture registry', () => {
  it('lists llama, mistral and qwen2 with their HF class names', () => {
    expect(listArchitectures().map((s) => [s.key, s.hfArchitectures])).toEqual([
      ['llama', ['LlamaForCausalLM']],
      ['mistral', ['MistralForCausalLM']],
      ['qwen2', ['Qwen2ForCausalLM']],
    ]);
    expect(getArchitectureByKey('qwen2').key).toBe('qwen2');
  });

  it('finds by architectures, falls back to model_type, refuses unknown ones by name', () => {
    expect(findArchitecture({ architectures: ['MistralForCausalLM'] }).key).toBe('mistral');
    expect(findArchitecture({ model_type: 'qwen2' }).key).toBe('qwen2');
    expect(() => findArchitecture({ architectures: ['GPT2LMHeadModel'] })).toThrow(UnsupportedModelError);
    expect(() => findArchitecture({ architectures: ['GPT2LMHeadModel'] })).toThrow(/GPT2LMHeadModel/);
    expect(() => findArchitecture({ model_type: 'gemma' })).toThrow(/model_type 'gemma'/);
    expect(() => findArchitecture({})).toThrow(UnsupportedModelError);
  });

  it('maps the Llama-family tensor names, including qwen2 biases', () => {
    const n = getArchitectureByKey('qwen2').tensorNames;
    expect(n.embedTokens).toBe('model.embed_tokens.weight');
    expect(n.finalNorm).toBe('model.norm.weight');
    expect(n.lmHead).toBe('lm_head.weight');
    expect(n.layer(3)).toMatchObject({
      attnNorm: 'model.layers.3.input_layernorm.weight',
      wq: 'model.layers.3.self_attn.q_proj.weight',
      bq: 'model.layers.3.self_attn.q_proj.bias',
      wo: 'model.layers.3.self_attn.o_proj.weight',
      mlpNorm: 'model.layers.3.post_attention_layernorm.weight',
      wGate: 'model.layers.3.mlp.gate_proj.weight',
      wUp: 'model.layers.3.mlp.up_proj.weight',
      wDown: 'model.layers.3.mlp.down_proj.weight',
    });
  });
});

describe('parseConfig: transformers v4 configs of published models', () => {
  it('Llama 3.1 8B: llama3 rope scaling, GQA, eos list, bf16', () => {
    expect(parseHfConfig(LLAMA31_8B)).toEqual({
      architecture: 'llama',
      hiddenSize: 4096,
      intermediateSize: 14336,
      numLayers: 32,
      numHeads: 32,
      numKvHeads: 8,
      headDim: 128,
      vocabSize: 128256,
      rmsNormEps: 1e-5,
      ropeTheta: 500000,
      ropeLayout: 'half',
      ropeScaling: {
        type: 'llama3',
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 8192,
      },
      attentionBias: false,
      tieWordEmbeddings: false,
      maxPositionEmbeddings: 131072,
      bosTokenId: 128000,
      eosTokenIds: [128001, 128008, 128009],
      weightDtype: 'bfloat16',
    });
  });

  it('accepts the older rope_scaling key "type" for llama3', () => {
    const rs = { ...(LLAMA31_8B.rope_scaling as object), rope_type: undefined, type: 'llama3' };
    expect(parseHfConfig(with_(LLAMA31_8B, { rope_scaling: rs })).ropeScaling?.factor).toBe(8);
  });

  it('Qwen2.5 0.5B: biases, tied embeddings, sliding window off', () => {
    const c = parseHfConfig(QWEN25_05B);
    expect(c).toMatchObject({
      architecture: 'qwen2',
      headDim: 64,
      numKvHeads: 2,
      attentionBias: true,
      tieWordEmbeddings: true,
      ropeTheta: 1e6,
      rmsNormEps: 1e-6,
      bosTokenId: 151643,
      eosTokenIds: [151643],
      ropeScaling: null,
    });
  });

  it('Mistral 7B v0.3: no window, no biases', () => {
    expect(parseHfConfig(MISTRAL_7B_V03)).toMatchObject({
      architecture: 'mistral',
      headDim: 128,
      attentionBias: false,
      ropeTheta: 1e6,
      maxPositionEmbeddings: 32768,
    });
  });

  it('applies defaults: kv heads = heads, head_dim = hidden/heads, rope_theta 10000, float32', () => {
    const minimal: HfConfigJson = {
      architectures: ['LlamaForCausalLM'],
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      vocab_size: 100,
    };
    expect(parseHfConfig(minimal)).toMatchObject({
      numKvHeads: 4,
      headDim: 16,
      ropeTheta: 10000,
      rmsNormEps: 1e-6,
      maxPositionEmbeddings: 2048,
      bosTokenId: 1,
      eosTokenIds: [2],
      weightDtype: 'float32',
      attentionBias: false,
      tieWordEmbeddings: false,
    });
    expect(parseHfConfig(with_(minimal, { head_dim: 32 })).headDim).toBe(32);
    expect(parseHfConfig(with_(minimal, { attention_bias: true })).attentionBias).toBe(true);
  });

  it('takes bos/eos from the tokenizer when config.json has none', () => {
    const noIds = with_(QWEN25_05B, { bos_token_id: undefined, eos_token_id: undefined });
    const spec = findArchitecture(noIds);
    expect(spec.parseConfig(noIds, { bosTokenId: 7, eosTokenIds: [8] })).toMatchObject({
      bosTokenId: 7,
      eosTokenIds: [8],
    });
    expect(() => spec.parseConfig(noIds)).toThrow(ModelLoadError);
  });

  it('rejects malformed fields with ModelLoadError', () => {
    expect(() => parseHfConfig(with_(LLAMA31_8B, { hidden_size: 'big' }))).toThrow(ModelLoadError);
    expect(() => parseHfConfig(with_(LLAMA31_8B, { num_key_value_heads: 5 }))).toThrow(/multiple/);
    expect(() => parseHfConfig(with_(LLAMA31_8B, { vocab_size: undefined }))).toThrow(/vocab_size/);
    expect(() => parseHfConfig(with_(LLAMA31_8B, { eos_token_id: [1, 'x'] }))).toThrow(/eos_token_id/);
    const rs = { ...(LLAMA31_8B.rope_scaling as object), factor: undefined };
    expect(() => parseHfConfig(with_(LLAMA31_8B, { rope_scaling: rs }))).toThrow(/rope_scaling.factor/);
  });
});

describe('parseConfig: transformers v5 configs of the fixtures', () => {
  const expected: Record<string, object> = {
    'llama-gqa': { architecture: 'llama', numHeads: 4, numKvHeads: 2, headDim: 16, tieWordEmbeddings: false },
    'llama-tied': { architecture: 'llama', tieWordEmbeddings: true, headDim: 8 },
    'qwen2-bias': { architecture: 'qwen2', attentionBias: true, ropeTheta: 1e6, eosTokenIds: [1, 2] },
    'llama3-rope': {
      ropeTheta: 20000,
      ropeScaling: {
        type: 'llama3',
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 32,
      },
      numKvHeads: 1,
    },
    'llama-fp16': { weightDtype: 'float16' },
    'llama-bf16': { weightDtype: 'bfloat16' },
    mistral: { architecture: 'mistral', hiddenSize: 32, headDim: 16, numHeads: 4 },
  };
  it.each(HF_FIXTURE_NAMES)('%s', (name) => {
    const json = JSON.parse(
      readFileSync(path.join(HF_FIXTURES_DIR, name, 'config.json'), 'utf8'),
    ) as HfConfigJson;
    expect(json.rope_parameters).toBeDefined(); // really the v5 dialect
    const c = parseHfConfig(json);
    expect(c).toMatchObject({
      vocabSize: 320,
      rmsNormEps: 1e-5,
      bosTokenId: json.bos_token_id,
      ropeLayout: 'half',
      numLayers: 2,
    });
    expect(c).toMatchObject(expected[name]);
  });
});

describe('parseConfig: unsupported options raise UnsupportedModelError naming the option', () => {
  it.each(['linear', 'dynamic', 'yarn', 'longrope'])('rope_scaling type %s', (t) => {
    expectUnsupported(with_(LLAMA31_8B, { rope_scaling: { rope_type: t, factor: 2 } }), 'rope_type');
    expectUnsupported(with_(LLAMA31_8B, { rope_scaling: { type: t, factor: 2 } }), t);
    expectUnsupported(
      with_(LLAMA31_8B, {
        rope_scaling: undefined,
        rope_parameters: { rope_type: t, rope_theta: 1e4, factor: 2 },
      }),
      'rope_parameters.rope_type',
    );
  });

  it('per-layer-type rope_parameters', () => {
    expectUnsupported(
      with_(LLAMA31_8B, {
        rope_scaling: undefined,
        rope_parameters: { full_attention: { rope_type: 'default' } },
      }),
      'rope_parameters',
    );
  });

  it('partial_rotary_factor', () => {
    expectUnsupported(with_(LLAMA31_8B, { partial_rotary_factor: 0.5 }), 'partial_rotary_factor');
  });

  it('hidden_act other than silu', () => {
    expectUnsupported(with_(LLAMA31_8B, { hidden_act: 'gelu' }), 'hidden_act');
    expectUnsupported(with_(QWEN25_05B, { hidden_act: 'relu' }), 'hidden_act');
  });

  it('mlp_bias', () => {
    expectUnsupported(with_(LLAMA31_8B, { mlp_bias: true }), 'mlp_bias');
  });

  it('quantization_config', () => {
    expectUnsupported(
      with_(LLAMA31_8B, { quantization_config: { quant_method: 'gptq' } }),
      'quantization_config',
    );
  });

  it('dtypes other than float32/float16/bfloat16', () => {
    expectUnsupported(with_(LLAMA31_8B, { torch_dtype: 'float8_e4m3fn' }), 'torch_dtype');
    expectUnsupported(with_(LLAMA31_8B, { torch_dtype: undefined, dtype: 'int8' }), 'dtype');
  });

  it('Mistral sliding_window smaller than max_position_embeddings (Mistral 7B v0.1)', () => {
    expectUnsupported(with_(MISTRAL_7B_V03, { sliding_window: 4096 }), 'sliding_window');
    expect(parseHfConfig(with_(MISTRAL_7B_V03, { sliding_window: 32768 })).architecture).toBe('mistral');
  });

  it('Qwen2 use_sliding_window', () => {
    expectUnsupported(
      with_(QWEN25_05B, { use_sliding_window: true, sliding_window: 4096 }),
      'use_sliding_window',
    );
    expectUnsupported(
      with_(QWEN25_05B, { use_sliding_window: true, sliding_window: undefined }),
      'use_sliding_window',
    );
    // a window as long as the context never binds
    expect(parseHfConfig(with_(QWEN25_05B, { use_sliding_window: true })).architecture).toBe('qwen2');
  });

  it('sliding layers in layer_types, and mrope', () => {
    expectUnsupported(
      with_(QWEN25_05B, { layer_types: ['full_attention', 'sliding_attention'] }),
      'layer_types',
    );
    expectUnsupported(with_(QWEN25_05B, { use_mrope: true }), 'use_mrope');
  });
});
