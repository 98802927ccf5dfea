import type { Weight } from './weights/weight.js';

/**
 * The engine's normalized view of a decoder-only transformer. Every loader (llama2.c, Hugging Face) turns
 * its format into these two objects; graph building and the runtime read nothing else.
 */

/** How RoPE pairs the dimensions of a head: llama2.c rotates (2i, 2i+1), Hugging Face rotates (i, i+d/2). */
export type RopeLayout = 'interleaved' | 'half';

export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface ModelConfig {
  /** Registry key of the architecture, e.g. 'llama', 'mistral', 'qwen2'. */
  architecture: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeLayout: RopeLayout;
  ropeScaling: Llama3RopeScaling | null;
  /** Whether q, k and v projections carry biases (Qwen2). */
  attentionBias: boolean;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  bosTokenId: number;
  eosTokenIds: number[];
  /** Data type of the stored weights (the engine computes in the format it is given, see WeightFormat). */
  weightDtype: 'float32' | 'float16' | 'bfloat16';
}

/**
 * One decoder layer's weights, row-major [out, in] as both formats store them (y = W x). Each is a Weight
 * handle: held in memory, or read from the checkpoint when a graph needs it (see weights/weight.ts).
 */
export interface LayerWeights {
  attnNorm: Weight; // [hidden]
  wq: Weight; // [heads*headDim, hidden]
  wk: Weight; // [kvHeads*headDim, hidden]
  wv: Weight; // [kvHeads*headDim, hidden]
  wo: Weight; // [hidden, heads*headDim]
  bq: Weight | null; // [heads*headDim]
  bk: Weight | null; // [kvHeads*headDim]
  bv: Weight | null; // [kvHeads*headDim]
  mlpNorm: Weight; // [hidden]
  wGate: Weight; // [intermediate, hidden]  (llama2.c w1)
  wUp: Weight; // [intermediate, hidden]    (llama2.c w3)
  wDown: Weight; // [hidden, intermediate]  (llama2.c w2)
}

/** Every tensor of a layer, in a fixed order (absent biases as null): for hashing and counting. */
export function layerTensors(l: LayerWeights): (Weight | null)[] {
  return [l.attnNorm, l.wq, l.wk, l.wv, l.wo, l.bq, l.bk, l.bv, l.mlpNorm, l.wGate, l.wUp, l.wDown];
}

export interface ModelWeights {
  embedTokens: Weight; // [vocab, hidden]
  layers: LayerWeights[];
  finalNorm: Weight; // [hidden]
  /** [vocab, hidden]; the same handle as embedTokens when embeddings are tied. */
  lmHead: Weight;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number;
  readonly eosTokenIds: readonly number[];
  /**
   * The most characters of text one token ever stands for: a text of n characters has at least
   * n / maxTokenChars tokens, so callers refuse overlong text before paying to encode it.
   */
  readonly maxTokenChars: number;
  /** The model's Jinja chat template (tokenizer_config.json `chat_template`), if it has one. */
  readonly chatTemplate?: string;
  /** Texts of the special tokens a chat template may write (`bos_token`, `eos_token`). */
  readonly specialTokens?: { bos?: string; eos?: string };
  /** Token ids of `text` without BOS; callers prepend BOS themselves so every mode builds prompts alike. */
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

export interface LoadedModel {
  config: ModelConfig;
  weights: ModelWeights;
  tokenizer: Tokenizer;
  /** Hex sha256 over the normalized config and all weights; identifies whose KV a cache holds. */
  fingerprint: string;
  /** Where it was loaded from, for messages. */
  source: string;
}
