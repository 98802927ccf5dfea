import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Engine, type EngineOptions } from '../../core/model/engine.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import { loadLlama2cModel } from '../../core/model/loaders/llama2c.js';
import { createRandomModel, type RandomModelShape } from '../../core/model/random.js';
import { planChunkTexts, planFrame, type PlannedPrompt } from '../../core/inference/prompt-plan.js';
import type { TemplateName } from '../../core/model/template.js';
import type { LoadedModel, Tokenizer } from '../../core/model/types.js';
import type { BlendChunkRef } from '../../core/queue/contracts.js';
import { dequantize, quantizeBlockwise, type QuantBits } from '../../core/model/weights/quantize.js';
import { heldWeight, type Weight } from '../../core/model/weights/weight.js';

/** The real pretrained tiny Llama shipped in models/ (the default model). */
export const STORIES_DIR = fileURLToPath(new URL('../../models/stories260K', import.meta.url));
export const STORIES_GOLDEN = `${STORIES_DIR}/golden_greedy.json`;

export async function storiesEngine(): Promise<Engine> {
  return Engine.create(await loadLlama2cModel(STORIES_DIR), { threads: 1 });
}

/** cbqa-3M, the question-answering Llama kept in the repository (models/cbqa-3M, see its README). */
export const CBQA_DIR = fileURLToPath(new URL('../../models/cbqa-3M', import.meta.url));

export async function cbqaEngine(): Promise<Engine> {
  return Engine.create(await loadHfModel(CBQA_DIR), { threads: 1 });
}

/** A small random Llama with GQA for identities that need no trained weights. */
export const SMALL_SHAPE: RandomModelShape = {
  hiddenSize: 64,
  intermediateSize: 128,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
  vocabSize: 300,
  weightStd: 0.15,
};

export async function randomEngine(
  shape: Partial<RandomModelShape> = {},
  seed = 7,
  opts: EngineOptions = {},
): Promise<Engine> {
  return Engine.create(createRandomModel({ ...SMALL_SHAPE, ...shape }, seed), { threads: 1, ...opts });
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** A multi-chunk input: chunks and the question (a continuation for stories260K) that follows them. */
export interface ChunkSet {
  chunks: string[];
  question: string;
}

/** stories260K multi-chunk inputs (test/fixtures/stories/story-sets.json; the TTFT benchmark reads it too). */
export const STORY_SETS: ChunkSet[] = (
  JSON.parse(readFileSync(new URL('../fixtures/stories/story-sets.json', import.meta.url), 'utf8')) as {
    sets: ChunkSet[];
  }
).sets;

/** The model with every linear layer replaced by its 4- or 8-bit round trip, held in fp32: q4's or q8's reference. */
export function dequantizedModel(m: LoadedModel, bits: QuantBits = 4): LoadedModel {
  const dq = (w: Weight) =>
    heldWeight(dequantize(quantizeBlockwise(w.f32(), w.shape[0], w.shape[1], bits)), w.shape);
  const layers = m.weights.layers.map((l) => ({
    ...l,
    wq: dq(l.wq),
    wk: dq(l.wk),
    wv: dq(l.wv),
    wo: dq(l.wo),
    wGate: dq(l.wGate),
    wUp: dq(l.wUp),
    wDown: dq(l.wDown),
  }));
  return { ...m, weights: { ...m.weights, layers, lmHead: dq(m.weights.lmHead) } };
}

/**
 * A blend job's prompt as the API plans it (core/inference/prompt-plan.ts): the question framed by its
 * template (default auto), then stored chunk references, then raw chunk texts.
 */
export function plannedPrompt(
  tok: Tokenizer,
  fingerprint: string,
  o: {
    question: string;
    template?: TemplateName;
    system?: string;
    chunks?: BlendChunkRef[];
    chunkTexts?: string[];
  },
): PlannedPrompt {
  const frame = planFrame(tok, fingerprint, {
    template: o.template ?? 'auto',
    system: o.system,
    question: o.question,
  });
  const raw = planChunkTexts(tok, fingerprint, o.chunkTexts ?? []);
  return {
    ...frame,
    chunks: [...(o.chunks ?? []), ...raw],
    promptField: o.chunkTexts ? 'chunks' : 'documents',
  };
}
