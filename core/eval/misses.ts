/**
 * Where a mode misses against full prefill on cbqa-3M: for the questions full answers and the mode does
 * not, which context rows blend recomputed, whether the rows that carry the answer (the colour token, the
 * `it` of `it is COLOUR`, the object) were among them, and where the wrong colour came from.
 */
import {
  QUESTION_TYPES,
  findAnswerRows,
  promptWords,
  wordClass,
  type PreparedQuestion,
  type QuestionOutcome,
  type QuestionType,
} from './qa.js';

export const COLOURS = new Set([
  'red',
  'blue',
  'green',
  'yellow',
  'black',
  'white',
  'pink',
  'purple',
  'orange',
  'brown',
  'gray',
  'gold',
]);

/** How many questions of a group had each answer-carrying row among the recomputed rows. */
export interface RowSelectionCounts {
  questions: number;
  colour: number;
  /** coref questions only: the `it` row. */
  it: number;
  corefQuestions: number;
  object: number;
  /** None of colour, it, object recomputed. */
  none: number;
}

export interface MissExample {
  index: number;
  type: QuestionType;
  answer: string;
  predicted: string;
  /** Where the wrong word appears in the context (see predictionSource). */
  predictedFrom: string;
  answerRows: { object: string; it: string | null; colour: string };
  /** Recomputed context rows as `word@index`. */
  selected: string[];
}

export interface MissAnalysis {
  questions: number;
  fullCorrect: number;
  modeCorrect: number;
  /** Full right, mode wrong. */
  missesVsFull: number;
  missesPerType: Record<QuestionType, number>;
  /** Reuse wrong, mode right / reuse right, mode wrong. */
  fixedVsReuse: number;
  brokenVsReuse: number;
  /**
   * Blend only, per question type: answer rows among the rows recomputed at the check layer, for the misses
   * and for the questions both full and the mode got right.
   */
  answerRowsSelected?: Record<'misses' | 'hits', Record<QuestionType, RowSelectionCounts>>;
  /**
   * Questions full got right, by whether the answer's colour token sits in the first chunk (whose cache
   * holds exactly full's rows: same positions, same preceding BOS) or a later one, and the mode's misses.
   */
  byAnswerChunk: Record<'first' | 'later', { questions: number; misses: number }>;
  /** Where the wrong colour came from, over the misses. */
  predictedFrom: Record<string, number>;
  /** Blend only: share of recomputed rows per word class, and of all context rows. */
  selectedClasses?: Record<string, { selected: number; context: number }>;
  examples: MissExample[];
}

/**
 * Where the wrongly predicted word sits in the context: as the colour of another object's `O is X` fact,
 * of an `it is X` that opens a chunk, or of an `it is X` inside a chunk; `not-in-context` otherwise.
 */
export function predictionSource(
  words: readonly string[],
  chunkStarts: ReadonlySet<number>,
  w: string,
): string {
  if (!COLOURS.has(w)) return 'not-a-colour';
  const kinds = new Set<string>();
  for (let i = 2; i < words.length; i++) {
    if (words[i] !== w || words[i - 1] !== 'is') continue;
    if (words[i - 2] !== 'it') kinds.add('other-object-fact');
    else kinds.add(chunkStarts.has(i - 2) ? 'chunk-opening-it' : 'in-chunk-it');
  }
  if (kinds.size === 0) return 'not-in-context';
  return [...kinds].sort().join('+');
}

function emptyCounts(): RowSelectionCounts {
  return { questions: 0, colour: 0, it: 0, corefQuestions: 0, object: 0, none: 0 };
}

function countRows(c: RowSelectionCounts, p: PreparedQuestion, selected: Int32Array): void {
  const rows = findAnswerRows(p.q);
  if (!rows) return;
  const has = new Set(selected);
  c.questions++;
  const colour = has.has(rows.colour);
  const it = rows.it !== null && has.has(rows.it);
  const object = has.has(rows.object);
  if (colour) c.colour++;
  if (rows.it !== null) c.corefQuestions++;
  if (it) c.it++;
  if (object) c.object++;
  if (!colour && !it && !object) c.none++;
}

function classShares(prepared: readonly PreparedQuestion[], outcomes: readonly QuestionOutcome[]) {
  const sel = new Map<string, number>();
  const ctx = new Map<string, number>();
  let nSel = 0;
  let nCtx = 0;
  outcomes.forEach((o, i) => {
    const { words } = promptWords(prepared[i].q);
    for (let r = 1; r < words.length; r++) {
      const k = wordClass(words[r], COLOURS);
      ctx.set(k, (ctx.get(k) ?? 0) + 1);
      nCtx++;
    }
    for (const r of o.selected ?? []) {
      const k = wordClass(words[r], COLOURS);
      sel.set(k, (sel.get(k) ?? 0) + 1);
      nSel++;
    }
  });
  const out: Record<string, { selected: number; context: number }> = {};
  for (const [k, n] of [...ctx].sort((a, b) => b[1] - a[1])) {
    out[k] = { selected: (sel.get(k) ?? 0) / Math.max(1, nSel), context: n / nCtx };
  }
  return out;
}

function example(p: PreparedQuestion, o: QuestionOutcome, idToWord: (id: number) => string): MissExample {
  const { words, chunkOf } = promptWords(p.q);
  const rows = findAnswerRows(p.q);
  const label = (i: number | null) => (i === null ? null : `${words[i]}@${i}`);
  const predicted = idToWord(o.predicted);
  return {
    index: p.index,
    type: p.q.type,
    answer: p.q.answer,
    predicted,
    predictedFrom: predictionSource(words, chunkStartSet(chunkOf), predicted),
    answerRows: rows
      ? { object: label(rows.object)!, it: label(rows.it), colour: label(rows.colour)! }
      : { object: '?', it: null, colour: '?' },
    selected: [...(o.selected ?? [])].map((i) => label(i)!),
  };
}

/** Index of the chunk holding the answer's colour token (-1 when the fact is not found). */
function answerChunk(p: PreparedQuestion): number {
  const rows = findAnswerRows(p.q);
  return rows ? promptWords(p.q).chunkOf[rows.colour] : -1;
}

function chunkStartSet(chunkOf: readonly number[]): Set<number> {
  const s = new Set<number>();
  for (let i = 1; i < chunkOf.length; i++) if (chunkOf[i] !== chunkOf[i - 1]) s.add(i);
  return s;
}

/** Compare one mode's outcomes with full's and reuse's on the same prepared questions (same order). */
export function analyseMisses(
  prepared: readonly PreparedQuestion[],
  full: readonly QuestionOutcome[],
  reuse: readonly QuestionOutcome[],
  mode: readonly QuestionOutcome[],
  idToWord: (id: number) => string,
  maxExamples = 8,
): MissAnalysis {
  const isBlend = mode.some((o) => o.selected);
  const perType = () =>
    Object.fromEntries(QUESTION_TYPES.map((t) => [t, emptyCounts()])) as Record<
      QuestionType,
      RowSelectionCounts
    >;
  const rowsSelected = { misses: perType(), hits: perType() };
  const byAnswerChunk = { first: { questions: 0, misses: 0 }, later: { questions: 0, misses: 0 } };
  const missesPerType = Object.fromEntries(QUESTION_TYPES.map((t) => [t, 0])) as Record<QuestionType, number>;
  const predictedFrom: Record<string, number> = {};
  const examples: MissExample[] = [];
  let missesVsFull = 0;
  for (let i = 0; i < prepared.length; i++) {
    const [p, o] = [prepared[i], mode[i]];
    if (!full[i].correct) continue;
    const where = answerChunk(p) === 0 ? byAnswerChunk.first : byAnswerChunk.later;
    where.questions++;
    if (o.correct) {
      if (o.selected) countRows(rowsSelected.hits[p.q.type], p, o.selected);
      continue;
    }
    where.misses++;
    missesVsFull++;
    missesPerType[p.q.type]++;
    if (o.selected) countRows(rowsSelected.misses[p.q.type], p, o.selected);
    const ex = example(p, o, idToWord);
    predictedFrom[ex.predictedFrom] = (predictedFrom[ex.predictedFrom] ?? 0) + 1;
    if (examples.length < maxExamples) examples.push(ex);
  }
  return {
    questions: prepared.length,
    fullCorrect: full.filter((o) => o.correct).length,
    modeCorrect: mode.filter((o) => o.correct).length,
    missesVsFull,
    missesPerType,
    fixedVsReuse: mode.filter((o, i) => o.correct && !reuse[i].correct).length,
    brokenVsReuse: mode.filter((o, i) => !o.correct && reuse[i].correct).length,
    ...(isBlend && { answerRowsSelected: rowsSelected }),
    byAnswerChunk,
    predictedFrom,
    ...(isBlend && { selectedClasses: classShares(prepared, mode) }),
    examples,
  };
}
