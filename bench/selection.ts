import {
  blendPrefill,
  type ChunkCacheData,
  measureFidelity,
  memorySource,
  precomputeChunk,
  selectionName,
  type BlendOptions,
} from '../core/blend/index.js';
import { loadBenchSettings } from '../core/config/bench.js';
import { Engine } from '../core/model/engine.js';
import { seededRandom } from '../core/model/generate.js';
import { loadLlama2cModel } from '../core/model/loaders/llama2c.js';
import { createRandomModel, LLAMA_100M } from '../core/model/random.js';
import { machine, median, printTable, storySets, writeResult } from './common.js';
import { storedChunks } from './stored-chunks.js';
import { FIDELITY_SELECTIONS } from './selection-configs.js';

/**
 * What each blend selection costs and how close it stays to full prefill:
 * - TTFT of every selection at r = 0.15 on the TTFT benchmark's random ~100M-parameter Llama (12 layers),
 *   4 chunks × 512 tokens plus a 32-token question, beside full and reuse, with caches in memory and read
 *   layer by layer from a local file store (fp16 objects, the blend worker's loader): a selection that
 *   needs every layer before it selects (lookahead, fused) loses the overlap of loading with recompute,
 *   which only the file tier shows. Medians of BENCH_REPS, the modes interleaved within each repetition
 *   (so drift of a noisy machine falls on all of them alike), one untimed round first.
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
const chunks: ChunkCacheData[] = [];
for (let i = 0; i < 4; i++) chunks.push(await precomputeChunk(engine, randomIds(512)));
const question = randomIds(32);
const files = await storedChunks(engine, chunks);

type Tier = 'memory' | 'file';
const modes: { name: string; opts: BlendOptions }[] = [
  { name: 'full', opts: { mode: 'full' } },
  { name: 'reuse', opts: { mode: 'reuse' } },
  { name: 'blend deviation', opts: { mode: 'blend', ratio: RATIO, selection: 'deviation' } },
  ...FIDELITY_SELECTIONS.map((s) => ({
    name: `blend ${selectionName(s)}`,
    opts: { mode: 'blend', ratio: RATIO, ...s } as BlendOptions,
  })),
];
// Full reads no cache: one run serves both tiers.
const runs = (['memory', 'file'] as Tier[]).flatMap((tier) =>
  modes.filter((m) => tier === 'memory' || m.name !== 'full').map((m) => ({ tier, ...m })),
);
const times = runs.map(() => [] as number[]);
for (let rep = -1; rep < reps; rep++) {
  for (const [i, r] of runs.entries()) {
    const t0 = performance.now();
    const sources = r.tier === 'memory' ? chunks.map((c) => memorySource(c)) : await files.open();
    await blendPrefill(engine, sources, question, r.opts);
    if (rep >= 0) times[i].push(performance.now() - t0);
  }
}
const ttft = runs.map((r, i) => {
  const ms = median(times[i]);
  const of = (name: string, tier: Tier) =>
    median(times[runs.findIndex((x) => x.name === name && (name === 'full' || x.tier === tier))]);
  return {
    mode: r.name,
    caches: r.name === 'full' ? '-' : r.tier,
    ttftMs: ms,
    allMs: times[i],
    ratioToFull: ms / of('full', r.tier),
    vsDeviation: ms / of('blend deviation', r.tier),
  };
});
await files.close();
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
  ['mode (4x512 + 32, r = 0.15)', 'caches', 'TTFT ms', 'of full', 'of blend deviation'],
  ttft.map((r) => [r.mode, r.caches, r.ttftMs, r.ratioToFull, r.vsDeviation]),
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
    interleaved: true,
    rows: ttft,
  },
  fidelity: { model: 'stories260K', sets: storySets().length, rows: fidelity },
});
console.log('wrote bench/results/selection.json');
