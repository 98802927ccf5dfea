/**
 * What splitting a prompt at the chunks found in it does to tokenization: the same prompt text tokenized
 * whole (BOS + encode(text)) and by spans (BOS + encode(lead) + encode(chunk 1) + encode(between) + … +
 * encode(question)), as automatic chunk matching builds it. Both are prefilled in full mode (no cache:
 * only the tokenization differs), so the distance between them is what the split alone costs.
 *
 * stories260K (sentencepiece-style BPE, 512 tokens): the 6 story sets, pasted LangChain-style
 * ("Answer from the context.\n\nContext:\n<c1>\n\n<c2>…\n\nQuestion: <continuation>"): token counts, how many
 * prompts tokenize identically, KL(whole ‖ spans) of the first token's distribution, top-1 agreement and
 * identical 16-token greedy continuations. cbqa-3M (word-level vocabulary): accuracy of the first answer
 * token on both public sets (300 questions each), chunks joined by spaces, whole vs spans.
 * Prints a table, writes bench/results/span-tokenization.json.
 */
import { fileURLToPath } from 'node:url';
import type { Engine } from '../core/model/engine.js';
import { Engine as EngineClass } from '../core/model/engine.js';
import { argmax, generate } from '../core/model/generate.js';
import { loadHfModel } from '../core/model/loaders/hf.js';
import { loadLlama2cModel } from '../core/model/loaders/llama2c.js';
import { QA_SETS, loadQuestions } from '../core/eval/qa.js';
import { machine, median, printTable, storySets, writeResult } from './common.js';

const STORIES_DIR = fileURLToPath(new URL('../../models/stories260K', import.meta.url));
const CBQA_DIR = fileURLToPath(new URL('../../models/cbqa-3M', import.meta.url));
const LEAD = 'Answer from the context.\n\nContext:\n';

function softmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  const p = Float64Array.from(logits, (x) => Math.exp(x - max));
  const sum = p.reduce((a, b) => a + b, 0);
  return p.map((x) => x / sum);
}

function kl(p: Float64Array, q: Float64Array): number {
  let d = 0;
  for (let i = 0; i < p.length; i++) if (p[i] > 0) d += p[i] * Math.log(p[i] / Math.max(q[i], 1e-30));
  return d;
}

const sameIds = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Whole and by-spans prompt ids of a text made of `parts` (`isChunk[i]`: a chunk span, else text). */
function tokenizations(engine: Engine, parts: string[]): { whole: number[]; spans: number[] } {
  const tok = engine.model.tokenizer;
  const bos = engine.config.bosTokenId;
  return {
    whole: [bos, ...tok.encode(parts.join(''))],
    spans: [bos, ...parts.flatMap((p) => tok.encode(p))],
  };
}

async function lastLogits(engine: Engine, ids: number[]): Promise<Float32Array> {
  return engine.forward(engine.newSequenceCache(ids.length), ids);
}

async function stories() {
  const engine = await EngineClass.create(await loadLlama2cModel(STORIES_DIR), { threads: 1 });
  const rows = [];
  for (const [i, set] of storySets().entries()) {
    const parts = [
      LEAD,
      ...set.chunks.flatMap((c, j) => (j ? ['\n\n', c] : [c])),
      `\n\nQuestion: ${set.question}`,
    ];
    const { whole, spans } = tokenizations(engine, parts);
    const [lw, ls] = [await lastLogits(engine, whole), await lastLogits(engine, spans)];
    const [gw, gs] = [
      await generate(engine, whole, { maxTokens: 16 }),
      await generate(engine, spans, { maxTokens: 16 }),
    ];
    rows.push({
      set: i,
      wholeTokens: whole.length,
      spanTokens: spans.length,
      identicalIds: sameIds(whole, spans),
      kl: kl(softmax(lw), softmax(ls)),
      top1Agrees: argmax(lw) === argmax(ls),
      greedy16Identical: sameIds(gw.tokens, gs.tokens),
    });
  }
  await engine.dispose();
  return rows;
}

async function cbqa() {
  const engine = await EngineClass.create(await loadHfModel(CBQA_DIR), { threads: 1 });
  const tok = engine.model.tokenizer;
  const questions = loadQuestions(CBQA_DIR);
  const out = [];
  for (const set of QA_SETS) {
    let whole = 0;
    let spans = 0;
    let identical = 0;
    const kls: number[] = [];
    for (const q of questions[set]) {
      const parts = [...q.chunks.flatMap((c, j) => (j ? [' ', c] : [c])), ` ${q.question}`];
      const t = tokenizations(engine, parts);
      const answer = tok.encode(q.answer)[0];
      const [lw, ls] = [await lastLogits(engine, t.whole), await lastLogits(engine, t.spans)];
      if (argmax(lw) === answer) whole++;
      if (argmax(ls) === answer) spans++;
      if (sameIds(t.whole, t.spans)) identical++;
      kls.push(kl(softmax(lw), softmax(ls)));
    }
    const n = questions[set].length;
    out.push({
      set,
      questions: n,
      wholeAccuracy: whole / n,
      spanAccuracy: spans / n,
      identicalIds: identical / n,
      medianKl: median(kls),
      maxKl: Math.max(...kls),
    });
  }
  await engine.dispose();
  return out;
}

const s = await stories();
printTable(
  [
    'stories260K set',
    'tokens whole',
    'by spans',
    'same ids',
    'KL(whole‖spans)',
    'top-1 agrees',
    'greedy 16 same',
  ],
  s.map((r) => [
    r.set,
    r.wholeTokens,
    r.spanTokens,
    String(r.identicalIds),
    r.kl,
    String(r.top1Agrees),
    String(r.greedy16Identical),
  ]),
);
const c = await cbqa();
printTable(
  ['cbqa-3M set', 'questions', 'full, whole', 'full, by spans', 'same ids', 'median KL', 'max KL'],
  c.map((r) => [r.set, r.questions, r.wholeAccuracy, r.spanAccuracy, r.identicalIds, r.medianKl, r.maxKl]),
);
writeResult('span-tokenization.json', {
  machine: machine('cpu'),
  mode: 'full (no cache: only the tokenization differs)',
  stories260K: {
    lead: LEAD,
    between: '\n\n',
    tail: '\n\nQuestion: <set question>',
    medianKl: median(s.map((r) => r.kl)),
    rows: s,
  },
  cbqa3M: c,
});
console.log('wrote bench/results/span-tokenization.json');
