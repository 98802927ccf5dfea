import {
  blendPrefill,
  memorySource,
  precomputeChunk,
  type ChunkCacheData,
  measureFidelity,
  type FidelityRow,
  type BlendMode,
  type BlendOptions,
  type ChunkKvSource,
} from '../core/blend/index.js';
import { loadBenchSettings } from '../core/config/bench.js';
import { Engine } from '../core/model/engine.js';
import type { WeightFormat } from '../core/model/weights/format.js';
import { FIDELITY_SELECTIONS } from './selection-configs.js';
import { weightFidelity } from './weight-fidelity.js';
import { storedChunks, type StoredChunks } from './stored-chunks.js';
import { measureTiers, type TierRow } from './ttft-tiers.js';
import { measureKvDtypeFidelity } from '../core/blend/kv-dtype-fidelity.js';
import { CALIBRATION_SAMPLE } from '../core/eval/calibration-sample.js';
import { seededRandom } from '../core/model/generate.js';
import { loadLlama2cModel } from '../core/model/loaders/llama2c.js';
import { createRandomModel, LLAMA_100M, parameterCount } from '../core/model/random.js';
import { lineChart, machine, printTable, storySets, timeMedian, writeResult, type Series } from './common.js';

/**
 * TTFT benchmark: a random ~100M-parameter Llama (12 layers), contexts of 4 and 8 chunks of 256 and 512
 * tokens plus a 32-token question; TTFT per mode with chunk caches in memory and read from a local file
 * store (fp16 objects, layer by layer), against the FLOP-bound ratio (1 + r(L-1))/L; at 4×512, blend from
 * every cache tier (LRU, disk, file store, S3 on loopback) in fp16 and int8 with each tier's load
 * breakdown (ttft-tiers.ts). Then the fidelity run on stories260K: KL and greedy agreement against full
 * for reuse and blend at several ratios, and what int8 caches cost against fp16 ones.
 */

const settings = loadBenchSettings();
const ep = settings.executionProvider;
const reps = settings.reps;
const STORIES = settings.storiesDir;
const STORY_SETS = storySets();
const RATIO = 0.15;
const QUESTION = 32;
const CONTEXTS = settings.contexts.map((c) => ({ n: c.chunks, len: c.tokens }));

const model = createRandomModel(LLAMA_100M);
const L = model.config.numLayers;
const engine = await Engine.create(model, { executionProvider: ep });
const rand = seededRandom(42);
const randomIds = (n: number) =>
  Array.from({ length: n }, () => 3 + Math.floor(rand() * (model.config.vocabSize - 3)));
const question = randomIds(QUESTION);

// Chunks of each length, shared by the 4- and 8-chunk contexts (the 4-chunk context is the first four).
const maxChunks = Math.max(...CONTEXTS.map((c) => c.n));
const chunksByLen = new Map<number, { data: ChunkCacheData[]; stored: StoredChunks }>();
console.error(`ttft benchmark on ${ep}: precomputing chunk caches...`);
for (const len of [...new Set(CONTEXTS.map((c) => c.len))]) {
  const data: ChunkCacheData[] = [];
  for (let i = 0; i < maxChunks; i++) data.push(await precomputeChunk(engine, randomIds(len)));
  chunksByLen.set(len, { data, stored: await storedChunks(engine, data) });
}

type Tier = 'memory' | 'file';
async function sources(tier: Tier, n: number, len: number): Promise<ChunkKvSource[]> {
  const { data, stored } = chunksByLen.get(len)!;
  return tier === 'memory' ? data.slice(0, n).map((c) => memorySource(c)) : stored.open(n);
}

const modes: { mode: BlendMode; opts: BlendOptions }[] = [
  { mode: 'full', opts: { mode: 'full' } },
  { mode: 'prefix', opts: { mode: 'prefix' } },
  { mode: 'reuse', opts: { mode: 'reuse' } },
  { mode: 'blend', opts: { mode: 'blend', ratio: RATIO } },
];

interface Row {
  context: string;
  contextTokens: number;
  promptTokens: number;
  tier: Tier;
  mode: BlendMode;
  ttftMs: number;
  allMs: number[];
  ratioToFull: number;
  flopBoundRatio: number | null;
  loadWaitMs: number;
}
const rows: Row[] = [];
for (const { n, len } of CONTEXTS) {
  let fullMs = 0;
  for (const tier of ['memory', 'file'] as Tier[]) {
    for (const { mode, opts } of modes) {
      if (mode === 'full' && tier === 'file') continue; // full reads no cache: the same run serves both tiers
      let promptTokens = 0;
      let loadWaitMs = 0;
      const run = async () => {
        // Opening the stored objects (header reads) is part of the query's time.
        const { prefill } = await blendPrefill(engine, await sources(tier, n, len), question, opts);
        promptTokens = prefill.promptTokens;
        loadWaitMs = prefill.timings.loadWaitMs;
      };
      // One untimed run first: onnxruntime grows its buffers on the first run of a new shape, which
      // measured up to 1.4x slower and made whichever mode came first at a context look worse.
      await run();
      const t = await timeMedian(reps, run);
      if (mode === 'full') fullMs = t.median;
      const row: Row = {
        context: `${n}x${len}`,
        contextTokens: n * len,
        promptTokens,
        tier,
        mode,
        ttftMs: t.median,
        allMs: t.all,
        ratioToFull: t.median / fullMs,
        flopBoundRatio: mode === 'blend' ? (1 + RATIO * (L - 1)) / L : null,
        loadWaitMs,
      };
      rows.push(row);
      console.error(
        `  ${row.context} ${tier} ${mode}: ${t.median.toFixed(0)} ms (${row.ratioToFull.toFixed(3)} of full)`,
      );
    }
  }
}
for (const { stored } of chunksByLen.values()) await stored.close();

// Every cache tier at 4×512 (when that context is measured), fp16 and int8 objects, beside full prefill.
const tierChunks = chunksByLen.get(512)?.data.slice(0, 4);
const tierRows: TierRow[] = tierChunks
  ? await measureTiers(engine, tierChunks, question, { ratio: RATIO, reps })
  : [];
await engine.dispose();

printTable(
  ['context', 'tokens', 'caches', 'mode', 'TTFT ms', 'ratio to full', 'FLOP-bound ratio', 'blend/bound'],
  rows.map((r) => [
    r.context,
    r.promptTokens,
    r.mode === 'full' ? '-' : r.tier,
    r.mode,
    r.ttftMs,
    r.ratioToFull,
    r.flopBoundRatio ?? '',
    r.flopBoundRatio ? r.ratioToFull / r.flopBoundRatio : '',
  ]),
);

const gbps = (x: number | null | undefined) => (x === null || x === undefined ? '-' : x);
printTable(
  [
    '4x512 caches',
    'kv dtype',
    'mode',
    'TTFT ms',
    'ratio to full',
    'load wait ms',
    'MB',
    'read ms',
    'read GB/s',
    'decode ms',
    'decode GB/s',
  ],
  tierRows.map((r) => [
    r.tier ?? '-',
    r.kvDtype ?? (r.tier === 'memory' ? 'fp32 arrays' : '-'),
    r.mode,
    r.ttftMs,
    r.ratioToFull,
    r.loadWaitMs ?? '-',
    r.load ? r.load.bytes / 1e6 : '-',
    r.load?.readMs ?? '-',
    gbps(r.load?.readGBps),
    r.load?.decodeMs ?? '-',
    gbps(r.load?.decodeGBps),
  ]),
);

// Weight formats (BENCH_WEIGHTS): the same model at 4×512 with its linear layers in each format, full and
// blend, chunk caches precomputed by that format's engine (as a worker running it stores them).
const weightRows = await measureWeightFormats();
printTable(
  ['weights', 'full ms', 'blend ms', 'blend / full', 'blend vs fp32 blend'],
  weightRows.map((r) => [
    r.weights,
    r.fullMs,
    r.blendMs,
    r.blendMs / r.fullMs,
    r.blendMs / weightRows[0].blendMs,
  ]),
);

async function measureWeightFormats() {
  const out: {
    weights: WeightFormat;
    fullMs: number;
    blendMs: number;
    fullAllMs: number[];
    blendAllMs: number[];
  }[] = [];
  const ids =
    chunksByLen
      .get(512)
      ?.data.slice(0, 4)
      .map((c) => c.tokenIds) ?? [];
  if (ids.length < 4) return out;
  for (const weights of settings.ttftWeights) {
    const e = await Engine.create(model, { executionProvider: ep, weights });
    const data = await Promise.all(ids.map((t) => precomputeChunk(e, t)));
    const time = async (opts: BlendOptions) => {
      const run = () => blendPrefill(e, data.map(memorySource), question, opts);
      await run();
      return timeMedian(reps, run);
    };
    const full = await time({ mode: 'full' });
    const blend = await time({ mode: 'blend', ratio: RATIO });
    await e.dispose();
    out.push({
      weights,
      fullMs: full.median,
      blendMs: blend.median,
      fullAllMs: full.all,
      blendAllMs: blend.all,
    });
    console.error(
      `  4x512 ${weights}: full ${full.median.toFixed(0)} ms, blend ${blend.median.toFixed(0)} ms`,
    );
  }
  return out;
}

// Fidelity on the real pretrained model.
console.error('fidelity run on stories260K...');
const stories = await Engine.create(await loadLlama2cModel(STORIES), { executionProvider: ep });
const fidelity: FidelityRow[] = await measureFidelity(stories, STORY_SETS, {
  ratios: [0.05, 0.15, 0.3, 0.5],
  metrics: ['k', 'v', 'kv'],
  agreementTokens: 16,
  selections: FIDELITY_SELECTIONS,
});
// What int8 chunk caches cost against fp16 ones (and fp32 for scale): reuse and the default blend, on the
// fidelity sets and on `cacheblend calibrate`'s sample.
const kvDtypeFidelity = [];
for (const [sample, sets] of [
  ['fidelity sets', STORY_SETS],
  ['calibration sample', CALIBRATION_SAMPLE],
] as const) {
  const rows = await measureKvDtypeFidelity(stories, [...sets], {
    dtypes: ['float32', 'int8'],
    reference: 'float16',
    configs: [
      { name: 'reuse', o: { mode: 'reuse' } },
      { name: `blend r=${RATIO}`, o: { mode: 'blend', ratio: RATIO } },
    ],
    agreementTokens: 16,
  });
  kvDtypeFidelity.push(...rows.map((r) => ({ sample, ...r })));
}
const storiesModel = stories.model;
await stories.dispose();
printTable(
  [
    'sample',
    'mode',
    'kv dtype',
    'mean KL vs full',
    'max KL vs full',
    'agreement vs full (16)',
    'mean KL vs fp16 caches',
    'max KL vs fp16',
    'agreement vs fp16 (16)',
  ],
  kvDtypeFidelity.map((f) => [
    f.sample,
    f.config,
    f.kvDtype,
    f.meanKlVsFull,
    f.maxKlVsFull,
    f.agreementVsFull,
    f.meanKlVsReference,
    f.maxKlVsReference,
    f.agreementVsReference,
  ]),
);
const formatFidelity = await weightFidelity(storiesModel);
printTable(
  ['weights', 'vs', 'mean KL (first token, full prefill)', 'greedy agreement (16)'],
  formatFidelity.map((f) => [f.weights, f.reference, f.meanKl, f.meanAgreement]),
);
printTable(
  ['mode', 'selection', 'ratio', 'metric', 'mean KL vs full', 'greedy agreement (16)', 'recomputed share'],
  fidelity.map((f) => [
    f.mode,
    f.selection ?? '-',
    f.ratio ?? '-',
    f.metric ?? '-',
    f.meanKl,
    f.meanAgreement,
    f.meanRecomputedShare,
  ]),
);

const tag = ep === 'cpu' ? 'cpu' : ep;
writeResult(`ttft-${tag}.json`, {
  machine: machine(ep),
  model: { ...LLAMA_100M, parameters: parameterCount(model) },
  ratio: RATIO,
  questionTokens: QUESTION,
  reps,
  rows,
  weightRows,
});
if (tierRows.length > 0) {
  writeResult(`ttft-tiers-${tag}.json`, {
    machine: machine(ep),
    model: { ...LLAMA_100M, parameters: parameterCount(model) },
    context: '4x512',
    ratio: RATIO,
    questionTokens: QUESTION,
    reps,
    rows: tierRows,
  });
}
writeResult(`fidelity-${tag}.json`, {
  machine: machine(ep),
  sets: STORY_SETS.length,
  rows: fidelity,
  weights: formatFidelity,
  kvDtypes: kvDtypeFidelity,
});
const series: Series[] = [];
for (const { mode } of modes) {
  for (const tier of (mode === 'full' ? ['memory'] : ['memory', 'file']) as Tier[]) {
    series.push({
      name: mode === 'full' ? 'full' : `${mode} (${tier})`,
      points: rows
        .filter((r) => r.mode === mode && r.tier === tier)
        .map((r) => ({ x: r.promptTokens, y: r.ttftMs })),
    });
  }
}
writeResult(
  `ttft-${tag}.svg`,
  lineChart({
    title: `TTFT per mode (${ep}, 100M Llama)`,
    xLabel: 'prompt tokens',
    yLabel: 'TTFT ms',
    series,
    logY: true,
  }),
);
const reuseKl = fidelity.find((f) => f.mode === 'reuse')!.meanKl;
writeResult(
  `fidelity-${tag}.svg`,
  lineChart({
    title: 'Quality vs recompute ratio (stories260K)',
    xLabel: 'ratio r (0 = reuse)',
    yLabel: 'mean KL vs full',
    series: (['k', 'v', 'kv'] as const).map((metric) => ({
      name: `blend, metric ${metric}`,
      points: [
        { x: 0, y: reuseKl },
        ...fidelity.filter((f) => f.metric === metric).map((f) => ({ x: f.ratio!, y: f.meanKl })),
      ],
    })),
  }),
);
console.log('wrote bench/results/ttft-*.json|svg and fidelity-*.json|svg');
