import {
  blendPrefill,
  measureFidelity,
  memorySource,
  precomputeChunk,
  selectionName,
  type BlendOptions,
  type ChunkKvSource,
} from '../core/blend/index.js';
import { loadBenchSettings } from '../core/config/bench.js';
import { Engine } from '../core/model/engine.js';
import { seededRandom } from '../core/model/generate.js';
import { loadLlama2cModel } from '../core/model/loaders/llama2c.js';
import { createRandomModel, LLAMA_100M } from '../core/model/random.js';
import { machine, printTable, storySets, timeMedian, writeResult } from './common.js';
import { FIDELITY_SELECTIONS } from './selection-configs.js';

/**
 * What each blend selection costs and how close it stays to full prefill:
 * - TTFT of every selection at r = 0.15 on the TTFT benchmark's random ~100M-parameter Llama (12 layers),
 *   4 chunks × 512 tokens plus a 32-token question, caches in memory, beside full and reuse (medians of
 *   BENCH_REPS, one untimed run first);
 * - stories260K: KL(full ‖ blend) of the first token and greedy agreement over 16 tokens, every selection
 *   at r = 0.05, 0.15, 0.3, 0.5 (measureFidelity, the same run bench:ttft makes).
 * Writes bench/results/selection.json.
 */
const settings = loadBenchSettings();
const ep = settings.executionProvider;
const reps = settings.repsGiven ?? 5;
const RATIO = 0.15;

const model = createRandomModel(LLAMA_100M);
const engine = await Engine.create(model, { executionProvider: ep });
const rand = seededRandom(42);
const randomIds = (n: number) =>
  Array.from({ length: n }, () => 3 + Math.floor(rand() * (model.config.vocabSize - 3)));
console.error('selection benchmark: precomputing 4 × 512-token chunk caches...');
const sources: ChunkKvSource[] = [];
for (let i = 0; i < 4; i++) sources.push(memorySource(await precomputeChunk(engine, randomIds(512))));
const question = randomIds(32);

const modes: { name: string; opts: BlendOptions }[] = [
  { name: 'full', opts: { mode: 'full' } },
  { name: 'reuse', opts: { mode: 'reuse' } },
  { name: 'blend deviation', opts: { mode: 'blend', ratio: RATIO, selection: 'deviation' } },
  ...FIDELITY_SELECTIONS.map((s) => ({
    name: `blend ${selectionName(s)}`,
    opts: { mode: 'blend', ratio: RATIO, ...s } as BlendOptions,
  })),
];
const ttft: { mode: string; ttftMs: number; allMs: number[]; ratioToFull: number; vsDeviation: number }[] =
  [];
for (const m of modes) {
  const run = () => blendPrefill(engine, sources, question, m.opts);
  await run();
  const t = await timeMedian(reps, run);
  const full = ttft[0]?.ttftMs ?? t.median;
  const dev = ttft.find((r) => r.mode === 'blend deviation')?.ttftMs ?? t.median;
  ttft.push({
    mode: m.name,
    ttftMs: t.median,
    allMs: t.all,
    ratioToFull: t.median / full,
    vsDeviation: t.median / dev,
  });
  console.error(`  ${m.name}: ${t.median.toFixed(0)} ms`);
}
await engine.dispose();

console.error('fidelity on stories260K...');
const stories = await Engine.create(await loadLlama2cModel(settings.storiesDir), { executionProvider: ep });
const fidelity = await measureFidelity(stories, storySets(), {
  ratios: [0.05, 0.15, 0.3, 0.5],
  metrics: ['k'],
  agreementTokens: 16,
  selections: FIDELITY_SELECTIONS,
});
await stories.dispose();

printTable(
  ['mode (4x512 + 32, r = 0.15)', 'TTFT ms', 'of full', 'of blend deviation'],
  ttft.map((r) => [r.mode, r.ttftMs, r.ratioToFull, r.vsDeviation]),
);
console.log('');
printTable(
  ['stories260K', 'ratio', 'mean KL (first token)', 'greedy agreement (16)'],
  fidelity.map((f) => [
    f.mode === 'reuse' ? 'reuse' : f.selection!,
    f.ratio ?? '-',
    f.meanKl,
    f.meanAgreement,
  ]),
);
writeResult('selection.json', {
  machine: machine(ep),
  ttft: {
    model: 'random LLAMA_100M (12 layers)',
    context: '4x512',
    questionTokens: 32,
    ratio: RATIO,
    reps,
    rows: ttft,
  },
  fidelity: { model: 'stories260K', sets: storySets().length, rows: fidelity },
});
console.log('wrote bench/results/selection.json');
