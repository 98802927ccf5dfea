import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadBenchSettings } from '../core/config/bench.js';
import { calibrate, type Calibration } from '../core/eval/calibrate.js';
import type { CalibrationSet } from '../core/eval/calibration-sample.js';
import { CHOICE_RULE, type CandidateScore } from '../core/eval/choose-selection.js';
import { generateQuestions } from '../core/eval/qa-dev.js';
import { generateStorySets } from '../core/eval/stories-dev.js';
import { Engine } from '../core/model/engine.js';
import { loadHfModel } from '../core/model/loaders/hf.js';
import { loadLlama2cModel } from '../core/model/loaders/llama2c.js';
import { machine, printTable, writeResult } from './common.js';

/**
 * Which selection holds on every model: `cacheblend calibrate`'s measurement (core/eval/calibrate.ts) of
 * every candidate selection at r = 0.15 against full prefill, on generated development sets of both
 * models — stories260K story sets (core/eval/stories-dev.ts) and cbqa-3M questions of both shapes
 * (core/eval/qa-dev.ts) — each as served (the stored rows shifted for the question-aware selections) and
 * with every stored row kept as stored. Per model,
 * the calibration rule picks a selection; across models the default is the candidate eligible on both
 * (agreement beats reuse's) with the lowest worst ratio of its 90th-percentile KL to reuse's.
 *
 *   npm run bench:robustness [-- --stories N --cbqa N]    writes bench/results/selection-robustness.json
 */
const { values: flags } = parseArgs({
  options: { stories: { type: 'string' }, cbqa: { type: 'string' }, seed: { type: 'string' } },
});
const storiesN = Number(flags.stories ?? 100);
const cbqaN = Number(flags.cbqa ?? 50);
const seed = Number(flags.seed ?? 1);
const settings = loadBenchSettings();
const ep = settings.executionProvider;
const CBQA_DIR = fileURLToPath(new URL('../../models/cbqa-3M', import.meta.url));

const samples: { model: string; load: () => Promise<Engine>; sample: CalibrationSet[] }[] = [
  {
    model: 'stories260K',
    load: async () => Engine.create(await loadLlama2cModel(settings.storiesDir), { executionProvider: ep }),
    sample: generateStorySets(storiesN, seed),
  },
  {
    model: 'cbqa-3M',
    load: async () => Engine.create(await loadHfModel(CBQA_DIR), { executionProvider: ep, threads: 1 }),
    sample: [
      ...generateQuestions('easy', cbqaN, 10 + seed),
      ...generateQuestions('main', cbqaN, 20 + seed),
    ].map((q) => ({ chunks: q.chunks, question: q.question })),
  },
];

const results: { model: string; shiftStored: boolean; calibration: Calibration }[] = [];
for (const s of samples) {
  const engine = await s.load();
  for (const shiftStored of [true, false]) {
    console.error(
      `${s.model}: ${s.sample.length} sets, stored rows ${shiftStored ? 'as served' : 'kept'}...`,
    );
    const calibration = await calibrate(engine, {
      sample: s.sample,
      sampleName: `dev seed ${seed}`,
      tokens: 16,
      blend: { mode: 'blend', ratio: 0.15, ...(!shiftStored && { shiftStored }) },
      kvDtype: 'float16',
    });
    results.push({ model: s.model, shiftStored, calibration });
  }
  await engine.dispose();
}

const rows = results.flatMap(({ model, shiftStored, calibration: c }) => [
  [
    model,
    shiftStored ? 'as served' : 'kept',
    'reuse',
    c.reuseVsFull.p90Kl,
    c.reuseVsFull.meanKl,
    c.reuseVsFull.maxKl,
    c.reuseVsFull.meanAgreement,
    '-',
    '',
  ],
  ...c.choice.candidates.map((x) => [
    model,
    shiftStored ? 'as served' : 'kept',
    x.name,
    x.p90Kl,
    x.meanKl,
    x.maxKl,
    x.meanAgreement,
    `${x.worseThanReuse}/${c.sample.sets}`,
    x.name === c.blend.selection ? 'chosen' : '',
  ]),
]);
printTable(
  ['model', 'stored rows', 'selection', 'p90 KL', 'mean KL', 'max KL', 'agreement', 'KL >= reuse', ''],
  rows,
);

/** Across models: eligible on every model, the lowest worst ratio of p90 KL to reuse's. */
function acrossModels(shiftStored: boolean): { name: string; worstRatio: number } | null {
  const per = results.filter((r) => r.shiftStored === shiftStored);
  const names = per[0].calibration.choice.candidates.map((x) => x.name);
  const scored = names.flatMap((name) => {
    const xs = per.map((r) => ({ r, x: r.calibration.choice.candidates.find((c) => c.name === name)! }));
    if (!xs.every(({ r, x }) => x.meanAgreement > r.calibration.reuseVsFull.meanAgreement)) return [];
    return [
      { name, worstRatio: Math.max(...xs.map(({ r, x }) => x.p90Kl / r.calibration.reuseVsFull.p90Kl)) },
    ];
  });
  return scored.sort((a, b) => a.worstRatio - b.worstRatio)[0] ?? null;
}
const across = { served: acrossModels(true), kept: acrossModels(false) };
console.log(`\nrule: ${CHOICE_RULE}`);
console.log(`across models (as served): ${JSON.stringify(across.served)}`);
console.log(`across models (stored rows kept): ${JSON.stringify(across.kept)}`);
writeResult('selection-robustness.json', {
  machine: machine(ep),
  ratio: 0.15,
  rule: CHOICE_RULE,
  acrossModelsRule:
    "eligible on every model (agreement beats reuse's); the lowest worst ratio of p90 KL to reuse's p90 KL",
  across,
  results: results.map(({ model, shiftStored, calibration: c }) => ({
    model,
    storedRows: shiftStored ? 'as served (shifted for question-aware selections)' : 'kept as stored',
    sample: c.sample,
    reuse: c.reuseVsFull,
    chosen: c.blend.selection,
    candidates: c.choice.candidates as CandidateScore[],
  })),
});
console.log('wrote bench/results/selection-robustness.json');
