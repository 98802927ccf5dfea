/**
 * Answer accuracy on a question-answering model (cbqa-3M, models/cbqa-3M: see its README): its question
 * sets, one answer per question through the same prompt, stored-cache round trip and prefill as
 * `cacheblend generate --max-tokens 1` and the blend worker, and where each answer sits in the prompt.
 * Used by `npm run bench:accuracy` and the accuracy tests.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { blendPrefill, type BlendOptions, type BlendPrefill, type ChunkKvSource } from '../blend/index.js';
import { storedChunk } from '../inference/chunk-objects.js';
import type { KvDtype } from '../kv/format.js';
import type { Engine } from '../model/engine.js';
import { argmax } from '../model/generate.js';

export type QuestionType = 'hop1_color' | 'coref_cross' | 'coref_intra';
export const QUESTION_TYPES: readonly QuestionType[] = ['hop1_color', 'coref_cross', 'coref_intra'];

export interface QaQuestion {
  /** Chunk texts, each a few facts ending in `<sep>`. */
  chunks: string[];
  /** `<q> color of O ? <a>` */
  question: string;
  /** One colour word. */
  answer: string;
  type: QuestionType;
}

export type QaSetName = 'easy' | 'main';
export const QA_SETS: readonly QaSetName[] = ['easy', 'main'];

/** The model folder's questions.json: public sets `easy` (the training distribution) and `main` (harder). */
export function loadQuestions(modelDir: string): Record<QaSetName, QaQuestion[]> {
  const file = path.join(modelDir, 'questions.json');
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, QaQuestion[]>;
  return { easy: raw.public_easy, main: raw.public_main };
}

export interface PreparedQuestion {
  index: number;
  q: QaQuestion;
  sources: ChunkKvSource[];
  questionIds: number[];
  answerId: number;
}

/**
 * Tokenize every question and precompute each distinct chunk's cache once, stored and read back in
 * `dtype` exactly as the service stores it; every configuration then reuses these sources.
 */
export async function prepareQuestions(
  engine: Engine,
  questions: readonly QaQuestion[],
  dtype: KvDtype = 'float16',
): Promise<PreparedQuestion[]> {
  const tok = engine.model.tokenizer;
  const chunkCache = new Map<string, ChunkKvSource>();
  const source = async (text: string) => {
    let s = chunkCache.get(text);
    if (!s) chunkCache.set(text, (s = await storedChunk(engine, tok.encode(text), dtype)));
    return s;
  };
  const out: PreparedQuestion[] = [];
  for (const [index, q] of questions.entries()) {
    const sources: ChunkKvSource[] = [];
    for (const c of q.chunks) sources.push(await source(c));
    const answerIds = tok.encode(q.answer);
    if (answerIds.length !== 1) throw new Error(`answer "${q.answer}" is not one token`);
    out.push({ index, q, sources, questionIds: tok.encode(q.question), answerId: answerIds[0] });
  }
  return out;
}

/** The greedy first token after the prompt in mode `opts` (what `--max-tokens 1` answers). */
export async function answerQuestion(
  engine: Engine,
  p: PreparedQuestion,
  opts: BlendOptions,
): Promise<{ predicted: number; prefill: BlendPrefill }> {
  const { prefill } = await blendPrefill(engine, p.sources, p.questionIds, opts);
  return { predicted: argmax(prefill.firstTokenLogits), prefill };
}

/**
 * Share of the context's token × layer computations the mode performed: full 1, reuse 0, prefix the
 * share of context tokens after the first chunk, blend (c + Σ_{l ≥ c} selected_l / context) / L for
 * check layer c (layers below it recompute every token). This is what blend costs relative to full, so
 * configurations with different check layers sit on one axis.
 */
export function recomputedShare(prefill: BlendPrefill, numLayers: number): number {
  const ctx = prefill.contextTokens;
  if (prefill.mode !== 'blend' || !prefill.selected) return prefill.recomputedTokens / ctx;
  const checkLayer = numLayers - prefill.selected.length;
  const selectedRows = prefill.selected.reduce((a, s) => a + s.length, 0);
  return (checkLayer * ctx + selectedRows) / (numLayers * ctx);
}

export interface QuestionOutcome {
  index: number;
  type: QuestionType;
  correct: boolean;
  predicted: number;
  share: number;
  /** The blend ratio used (the controller's choice under `ratio: "auto"`). */
  ratio: number;
  /** Blend: context rows (prompt indices) recomputed at the check layer. */
  selected?: Int32Array;
}

export interface AccuracySummary {
  accuracy: number;
  perType: Record<QuestionType, number>;
  recomputedShare: number;
  outcomes: QuestionOutcome[];
}

/**
 * Answer every prepared question in mode `opts` (or per question, for analysis hooks); accuracy overall
 * and per question type.
 */
export async function measureAccuracy(
  engine: Engine,
  prepared: readonly PreparedQuestion[],
  opts: BlendOptions | ((p: PreparedQuestion) => BlendOptions),
): Promise<AccuracySummary> {
  const outcomes: QuestionOutcome[] = [];
  for (const p of prepared) {
    const o = typeof opts === 'function' ? opts(p) : opts;
    const { predicted, prefill } = await answerQuestion(engine, p, o);
    outcomes.push({
      index: p.index,
      type: p.q.type,
      correct: predicted === p.answerId,
      predicted,
      share: recomputedShare(prefill, engine.config.numLayers),
      ratio: prefill.ratio,
      ...(prefill.selected && { selected: prefill.selected[0] }),
    });
  }
  const share = (xs: QuestionOutcome[]) => (xs.length ? xs.filter((o) => o.correct).length / xs.length : NaN);
  const perType = Object.fromEntries(
    QUESTION_TYPES.map((t) => [t, share(outcomes.filter((o) => o.type === t))]),
  ) as Record<QuestionType, number>;
  const meanShare = outcomes.reduce((a, o) => a + o.share, 0) / Math.max(1, outcomes.length);
  return { accuracy: share(outcomes), perType, recomputedShare: meanShare, outcomes };
}

/** The prompt's rows that carry a question's answer, by prompt index (row 0 is BOS). */
export interface AnswerRows {
  /** hop1: `O is COLOUR`'s O; coref: `bought O`'s O. */
  object: number;
  /** coref only: the `it` of `it is COLOUR` right after `bought O .`. */
  it: number | null;
  /** The COLOUR token that answers the question. */
  colour: number;
  /** Whether `it`/the colour sit in a later chunk than the object (coref_cross). */
  crossesChunks: boolean;
}

/** Prompt words (`<sep>` + every chunk's words + the question's): one token per word in this vocabulary. */
export function promptWords(q: QaQuestion): { words: string[]; chunkOf: number[] } {
  const words = ['<sep>'];
  const chunkOf = [-1];
  q.chunks.forEach((c, i) => {
    for (const w of c.split(/\s+/).filter(Boolean)) {
      words.push(w);
      chunkOf.push(i);
    }
  });
  return { words, chunkOf };
}

/** Locate the fact a question's answer comes from; null when the context does not state it as expected. */
export function findAnswerRows(q: QaQuestion): AnswerRows | null {
  const obj = /color of (\S+) \?/.exec(q.question)?.[1];
  if (!obj) return null;
  const { words, chunkOf } = promptWords(q);
  const at = (i: number, ...ws: string[]) => ws.every((w, j) => words[i + j] === w);
  for (let i = 1; i < words.length; i++) {
    if (q.type === 'hop1_color' && at(i, obj, 'is', q.answer)) {
      return { object: i, it: null, colour: i + 2, crossesChunks: false };
    }
    if (q.type !== 'hop1_color' && at(i, 'bought', obj, '.')) {
      // The next `it` (after `<sep>` when the reference crosses into the next chunk).
      const it = i + 3 + (words[i + 3] === '<sep>' ? 1 : 0);
      if (!at(it, 'it', 'is', q.answer)) continue;
      return { object: i + 1, it, colour: it + 2, crossesChunks: chunkOf[it] !== chunkOf[i + 1] };
    }
  }
  return null;
}

/** Coarse class of a prompt word, to say what kind of tokens a selection picked. */
export function wordClass(w: string, colours: ReadonlySet<string>): string {
  if (w === '<sep>') return '<sep>';
  if (colours.has(w)) return 'colour';
  const m = /^([POC])\d+$/.exec(w);
  if (m) return { P: 'person', O: 'object', C: 'city' }[m[1]]!;
  return w;
}
