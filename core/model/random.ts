import { fingerprintModel } from './fingerprint.js';
import { seededRandom } from './generate.js';
import {
  layerTensors,
  type LayerWeights,
  type LoadedModel,
  type ModelConfig,
  type Tokenizer,
} from './types.js';
import { heldWeight } from './weights/weight.js';

/** Shape of a randomly initialised Llama for benchmarks; the rest of ModelConfig gets Llama defaults. */
export interface RandomModelShape {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  vocabSize: number;
  ropeLayout?: ModelConfig['ropeLayout'];
  /** Weight scale (default 0.02, as Llama initialises). Tests use larger ones so context visibly matters. */
  weightStd?: number;
}

/** Byte-level stand-in tokenizer for random models: each UTF-8 byte is a token (ids 3..258). */
class ByteTokenizer implements Tokenizer {
  readonly bosTokenId = 1;
  readonly eosTokenIds = [2];
  readonly maxTokenChars = 1;
  constructor(readonly vocabSize: number) {}
  encode(text: string): number[] {
    return Array.from(new TextEncoder().encode(text), (b) => (b + 3) % this.vocabSize);
  }
  decode(ids: readonly number[]): string {
    return new TextDecoder().decode(new Uint8Array(ids.filter((i) => i >= 3 && i < 259).map((i) => i - 3)));
  }
}

/**
 * A Llama-shaped model with N(0, 0.02²)-like uniform weights: enough to measure speed and to test
 * identities between modes; its text is noise.
 */
export function createRandomModel(shape: RandomModelShape, seed = 1234): LoadedModel {
  const rand = seededRandom(seed);
  const std = shape.weightStd ?? 0.02;
  const init = (shape: number[], scale = std) => {
    const a = new Float32Array(shape[0] * shape[1]);
    const s = scale * Math.sqrt(3); // uniform with this std
    for (let i = 0; i < a.length; i++) a[i] = (rand() * 2 - 1) * s;
    return heldWeight(a, shape);
  };
  const ones = (n: number) => heldWeight(new Float32Array(n).fill(1), [n]);
  const { hiddenSize: D, intermediateSize: I, numHeads: H, numKvHeads: KV } = shape;
  const hd = D / H;
  const config: ModelConfig = {
    architecture: 'llama',
    hiddenSize: D,
    intermediateSize: I,
    numLayers: shape.numLayers,
    numHeads: H,
    numKvHeads: KV,
    headDim: hd,
    vocabSize: shape.vocabSize,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeLayout: shape.ropeLayout ?? 'half',
    ropeScaling: null,
    attentionBias: false,
    tieWordEmbeddings: false,
    maxPositionEmbeddings: 8192,
    bosTokenId: 1,
    eosTokenIds: [2],
    weightDtype: 'float32',
  };
  const layers: LayerWeights[] = Array.from({ length: shape.numLayers }, () => ({
    attnNorm: ones(D),
    wq: init([H * hd, D]),
    wk: init([KV * hd, D]),
    wv: init([KV * hd, D]),
    wo: init([D, H * hd]),
    bq: null,
    bk: null,
    bv: null,
    mlpNorm: ones(D),
    wGate: init([I, D]),
    wUp: init([I, D]),
    wDown: init([D, I]),
  }));
  // Larger embeddings than std 0.02 so hidden states are not dominated by rounding.
  const weights = {
    embedTokens: init([shape.vocabSize, D], 1),
    layers,
    finalNorm: ones(D),
    lmHead: init([shape.vocabSize, D]),
  };
  return {
    config,
    weights,
    tokenizer: new ByteTokenizer(shape.vocabSize),
    fingerprint: fingerprintModel(config, weights),
    source: `random:${JSON.stringify(shape)}:seed=${seed}`,
  };
}

/** The ~100M-parameter benchmark shape named in the engine issue: 12 layers, dim 768, GQA 12/4. */
export const LLAMA_100M: RandomModelShape = {
  hiddenSize: 768,
  intermediateSize: 2048,
  numLayers: 12,
  numHeads: 12,
  numKvHeads: 4,
  vocabSize: 32000,
};

/** Parameters of a model, from its tensors' shapes (nothing is read). */
export function parameterCount(m: LoadedModel): number {
  const w = m.weights;
  let n = w.embedTokens.size + w.finalNorm.size + (w.lmHead === w.embedTokens ? 0 : w.lmHead.size);
  for (const l of w.layers) {
    for (const a of layerTensors(l)) n += a?.size ?? 0;
  }
  return n;
}
