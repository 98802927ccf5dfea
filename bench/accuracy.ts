import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BlendOptions } from '../core/blend/index.js';
import {
  QA_SETS,
  QUESTION_TYPES,
  analyseMisses,
  autoRatio,
  findAnswerRows,
  loadQuestions,
  measureAccuracy,
  prepareQuestions,
  type AccuracySummary,
  type AnswerRows,
  type MissAnalysis,
  type PreparedQuestion,
  type QaSetName,
  type QuestionType,
  type RowSelectionCounts,
} from '../core/eval/index.js';
import { generateQuestions } from '../core/eval/qa-dev.js';
import { Engine } from '../core/model/engine.js';
import { loadHfModel } from '../core/model/loaders/hf.js';
import { parameterCount } from '../core/model/random.js';
import { loadBenchSettings } from '../core/config/bench.js';
import type { WeightFormat } from '../core/model/weights/format.js';
import {
  ANALYSED,
  DEFAULT_LABEL,
  NEW_DEFAULT_LABEL,
  chart,
  grid,
  toRow,
  type AccuracyConfig,
  type AccuracyRow,
} from './accuracy-grid.js';
import { machine, printTable, writeResult } from './common.js';

/** The model, kept in the repository (relative to dist/bench/ when compiled). */
const CBQA_DIR = fileURLToPath(new URL('../../models/cbqa-3M', import.meta.url));

/**
 * Answer accuracy on cbqa-3M (models/cbqa-3M), a small Llama trained to answer questions whose answer
 * sits in one chunk or only across a chunk boundary: full, prefix, reuse and blend over a grid of ratios,
 * deviation metrics, check layers and gradual filtering, on both public question sets. One process: the
 * engine is built once and each chunk's cache is precomputed once and round-tripped through the stored
 * fp16 format (as the service and `cacheblend generate` do); every configuration reuses those caches.
 * Then the other weight formats, and int8 caches (KV_DTYPE=int8) at the default ratio.
 * The answer is the greedy first token (`--max-tokens 1`).
 *
 *   npm run bench:accuracy                       the whole grid, both sets; writes bench/results/accuracy.*
 *   npm run bench:accuracy -- --sets easy --limit 50 --only 'reuse|k/1'   a subset; prints only
 *   BENCH_WEIGHTS=q4,q8 npm run bench:accuracy -- --only '^blend (k|combined lookahead)/1 r=0.15$' \
 *     --out accuracy-formats.json      the weight formats' rows alone, written under that name
 */

const { values: flags } = parseArgs({
  options: {
    sets: { type: 'string' },
    limit: { type: 'string' },
    only: { type: 'string' },
    threads: { type: 'string' },
    dev: { type: 'string' },
    out: { type: 'string' },
  },
});

const sets = (flags.sets?.split(',') ?? QA_SETS) as QaSetName[];
for (const s of sets) if (!QA_SETS.includes(s)) throw new Error(`--sets: unknown set "${s}" (easy, main)`);
const limit = flags.limit === undefined ? Infinity : Number(flags.limit);
const only = flags.only === undefined ? null : new RegExp(flags.only);
const partial =
  flags.dev !== undefined || flags.sets !== undefined || flags.limit !== undefined || only !== null;
// Always run the baselines the miss analysis compares against.
const configs = grid().filter(
  (c) => !only || only.test(c.label) || c.label === 'full' || c.label === 'reuse',
);

const model = await loadHfModel(CBQA_DIR);
// One intra-op thread: at these sizes (≤ 360 tokens, hidden 256) a second thread only adds overhead.
const engine = await Engine.create(model, { threads: Number(flags.threads ?? 1) });
// --dev N: N generated questions per set (core/eval/qa-dev.ts) instead of the public sets.
const dev = flags.dev === undefined ? 0 : Number(flags.dev);
const questions = dev
  ? { easy: generateQuestions('easy', dev, 1), main: generateQuestions('main', dev, 2) }
  : loadQuestions(CBQA_DIR);
const idToWord = (id: number) => model.tokenizer.decode([id]).trim() || `#${id}`;

/**
 * Oracle runs for the miss analysis: the default blend (K, check layer 1, r = 0.15), but the rows that
 * carry the answer are forced into the selection (their deviation set to +∞ before the top-k; the count
 * of recomputed rows stays the same). Shows whether recomputing those rows would have been enough.
 */
const ORACLES: { label: string; rows: (a: AnswerRows) => number[] }[] = [
  { label: 'colour row forced', rows: (a) => [a.colour] },
  { label: 'fact rows forced (O|it, is, COLOUR)', rows: (a) => [a.it ?? a.object, a.colour - 1, a.colour] },
];

function forcing(checkLayer: number, pick: (a: AnswerRows) => number[]) {
  return (p: PreparedQuestion): BlendOptions => {
    const a = findAnswerRows(p.q);
    const forced = new Set(a ? pick(a) : []);
    return {
      mode: 'blend',
      ratio: 0.15,
      metric: 'k',
      checkLayer,
      selection: 'deviation',
      adjustDeviations: (layer, rows, dev) => {
        if (layer !== checkLayer) return;
        rows.forEach((r, i) => {
          if (forced.has(r)) dev[i] = Infinity;
        });
      },
    };
  };
}

interface OracleRow {
  set: QaSetName;
  label: string;
  accuracy: number;
  perType: Record<QuestionType, number>;
  /** Of the default blend's misses against full, how many the oracle answers. */
  fixed: number;
  misses: number;
}

/** One configuration over a set's questions; `auto` measures loads first (see core/eval/auto.ts). */
async function measureConfig(
  c: AccuracyConfig,
  prepared: PreparedQuestion[],
  engine: Engine,
): Promise<AccuracySummary> {
  if (c.options !== 'auto') return measureAccuracy(engine, prepared, c.options);
  const auto = await autoRatio(engine, prepared);
  try {
    return await measureAccuracy(engine, prepared, (p) => auto.options(p));
  } finally {
    auto.close();
  }
}

const rows: AccuracyRow[] = [];
const oracles: OracleRow[] = [];
const misses: Record<string, Record<string, MissAnalysis>> = {};
const t0 = performance.now();
for (const set of sets) {
  const qs = questions[set].slice(0, limit);
  const prepared = await prepareQuestions(engine, qs);
  console.error(`${set}: ${qs.length} questions, chunk caches precomputed`);
  const summaries = new Map<string, AccuracySummary>();
  for (const c of configs) {
    const t = performance.now();
    const s = await measureConfig(c, prepared, engine);
    summaries.set(c.label, s);
    rows.push(toRow(set, c, s));
    const ms = (performance.now() - t) / qs.length;
    console.error(`  ${set} ${c.label}: ${s.accuracy.toFixed(3)} (${ms.toFixed(1)} ms/question)`);
  }
  misses[set] = {};
  const full = summaries.get('full')!.outcomes;
  const reuse = summaries.get('reuse')!.outcomes;
  for (const label of ANALYSED) {
    const s = summaries.get(label);
    if (s) misses[set][label] = analyseMisses(prepared, full, reuse, s.outcomes, idToWord);
  }
  const base = summaries.get(DEFAULT_LABEL);
  if (base) {
    for (const o of ORACLES) {
      const s = await measureAccuracy(engine, prepared, forcing(1, o.rows));
      const missed = base.outcomes.filter((b, i) => full[i].correct && !b.correct);
      const fixed = missed.filter((b) => s.outcomes[b.index].correct).length;
      oracles.push({
        set,
        label: o.label,
        accuracy: s.accuracy,
        perType: s.perType,
        fixed,
        misses: missed.length,
      });
    }
  }
}
await engine.dispose();

/**
 * The other weight formats (BENCH_WEIGHTS; fp16 and q4 by default): full, reuse and the default blend,
 * each format with its own engine and its own chunk caches (as a worker running that format stores them).
 */
const FORMAT_CONFIGS = ['full', 'reuse', DEFAULT_LABEL, NEW_DEFAULT_LABEL];
const benchSettings = loadBenchSettings(process.env);
const formats = [...new Set<WeightFormat>(['fp16', ...benchSettings.ttftWeights])].filter(
  (w) => w !== 'fp32',
);
for (const weights of formats) {
  const e = await Engine.create(model, { threads: Number(flags.threads ?? 1), weights });
  for (const set of sets) {
    const prepared = await prepareQuestions(e, questions[set].slice(0, limit));
    for (const c of configs.filter((x) => FORMAT_CONFIGS.includes(x.label))) {
      const s = await measureConfig(c, prepared, e);
      rows.push({ ...toRow(set, c, s), weights });
      console.error(`  ${set} ${c.label} (${weights} weights): ${s.accuracy.toFixed(3)}`);
    }
  }
  await e.dispose();
}

/**
 * Chunk caches stored in the other KV dtypes (int8; every row above read fp16 caches): reuse and the blends
 * at the default ratio with fp32 weights. Full prefill reads no cache: its rows above hold for every dtype.
 */
const KV_DTYPE_CONFIGS = ['reuse', DEFAULT_LABEL, NEW_DEFAULT_LABEL];
for (const kvDtype of ['int8'] as const) {
  const e = await Engine.create(model, { threads: Number(flags.threads ?? 1) });
  for (const set of sets) {
    const prepared = await prepareQuestions(e, questions[set].slice(0, limit), kvDtype);
    for (const c of configs.filter((x) => KV_DTYPE_CONFIGS.includes(x.label))) {
      const s = await measureConfig(c, prepared, e);
      rows.push({ ...toRow(set, c, s), kvDtype });
      console.error(`  ${set} ${c.label} (${kvDtype} caches): ${s.accuracy.toFixed(3)}`);
    }
  }
  await e.dispose();
}
const elapsedS = (performance.now() - t0) / 1000;

printTable(
  [
    'set',
    'weights',
    'caches',
    'mode',
    'selection',
    'ratio',
    'metric',
    'check',
    'accuracy',
    ...QUESTION_TYPES,
    'recomputed share',
  ],
  rows.map((r) => [
    r.set,
    r.weights,
    r.kvDtype,
    r.mode,
    r.selection
      ? `${r.selection}${r.attention === 'lookahead' ? ' lookahead' : ''}${r.sinkTokens ? ` +${r.sinkTokens} sinks` : ''}`
      : '-',
    r.auto ? `auto (${r.ratio!.toFixed(2)})` : (r.gradualRatios?.join(',') ?? String(r.ratio ?? '-')),
    r.metric ?? '-',
    r.checkLayer ?? '-',
    r.accuracy.toFixed(3),
    ...QUESTION_TYPES.map((t) => r.perType[t].toFixed(3)),
    r.recomputedShare.toFixed(3),
  ]),
);
console.log('');
printTable(
  [
    'set',
    'configuration',
    'full right',
    'mode right',
    'misses vs full',
    'answer in chunk 1 / later: misses',
    'colour row recomputed (misses / hits)',
    'coref `it` recomputed (misses / hits)',
  ],
  Object.entries(misses).flatMap(([set, byLabel]) =>
    Object.entries(byLabel).map(([label, m]) => {
      const sel = m.answerRowsSelected;
      const sum = (g: 'misses' | 'hits', f: (c: RowSelectionCounts) => number) =>
        QUESTION_TYPES.reduce((a, t) => a + f(sel![g][t]), 0);
      const ratio = (f: (c: RowSelectionCounts) => number, d: (c: RowSelectionCounts) => number) =>
        `${sum('misses', f)}/${sum('misses', d)} / ${sum('hits', f)}/${sum('hits', d)}`;
      const { first, later } = m.byAnswerChunk;
      return [
        set,
        label,
        m.fullCorrect,
        m.modeCorrect,
        m.missesVsFull,
        `${first.misses}/${first.questions} / ${later.misses}/${later.questions}`,
        sel
          ? ratio(
              (c) => c.colour,
              (c) => c.questions,
            )
          : '-',
        sel
          ? ratio(
              (c) => c.it,
              (c) => c.corefQuestions,
            )
          : '-',
      ];
    }),
  ),
);
console.log('');
printTable(
  ['set', `oracle (${DEFAULT_LABEL})`, 'accuracy', ...QUESTION_TYPES, 'default misses answered'],
  oracles.map((o) => [
    o.set,
    o.label,
    o.accuracy.toFixed(3),
    ...QUESTION_TYPES.map((t) => o.perType[t].toFixed(3)),
    `${o.fixed}/${o.misses}`,
  ]),
);
console.error(`${elapsedS.toFixed(0)} s in all`);

if (partial && flags.out) {
  // A subset's rows under a name of their own, never over the whole grid's accuracy.json.
  if (!/^accuracy-[a-z0-9-]+\.json$/.test(flags.out))
    throw new Error('--out: a name like accuracy-formats.json');
  const modelInfo = { name: 'cbqa-3M', path: 'models/cbqa-3M', parameters: parameterCount(model) };
  const subset = { sets, limit: flags.limit ?? null, only: flags.only ?? null, weights: formats };
  writeResult(flags.out, { model: modelInfo, machine: { ...machine('cpu'), elapsedS }, subset, rows });
  console.log(`wrote bench/results/${flags.out}`);
} else if (partial) {
  console.log('a subset (--sets, --limit or --only): nothing written (--out NAME writes its rows)');
} else {
  const modelInfo = { name: 'cbqa-3M', path: 'models/cbqa-3M', parameters: parameterCount(model) };
  writeResult('accuracy.json', { model: modelInfo, machine: { ...machine('cpu'), elapsedS }, rows });
  writeResult('accuracy-misses.json', { model: modelInfo, misses, oracles });
  for (const set of sets) writeResult(`accuracy-${set}.svg`, chart(set, rows));
  console.log('wrote bench/results/accuracy.json, accuracy-misses.json, accuracy-{easy,main}.svg');
}
