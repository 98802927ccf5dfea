/**
 * bench:gpu's scale run (`npm run bench:gpu -- scale`): real model sizes on the device engine. For each
 * shape (BENCH_SCALE_SHAPES: the 124.7M benchmark Llama, Llama-3.2-1B, Llama-3.1-8B) a randomly
 * initialised checkpoint is written by transformers (bench/make_scale_checkpoints.py: bf16 shards plus
 * index, nothing downloaded) and loaded through the project's Hugging Face loader, as a user's would be,
 * once per weight format (BENCH_SCALE_WEIGHTS). Beside it, PyTorch bf16 on the same shape, card and run.
 * Writes bench/results/gpu-scale.json and gpu-scale.svg.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBenchSettings } from '../core/config/bench.js';
import { Engine } from '../core/model/engine.js';
import { loadModel } from '../core/model/load.js';
import { parameterCount } from '../core/model/random.js';
import type { WeightFormat } from '../core/model/weights/format.js';
import { barChart, machine, printTable, RESULTS_DIR, writeResult } from './common.js';
import { blendTtfts, decodeTokPerS, precomputeTokPerS, selectionTtfts, workload } from './gpu-measure.js';
import { card } from './gpu-card.js';
import { loadInChild } from './load-once.js';
import { TIERS, tierTtfts } from './gpu-tiers.js';

const settings = loadBenchSettings();
const reps = settings.repsGiven ?? 5;

interface TorchShape {
  parameters: number;
  torchBf16Ms: number;
  torchDecodeTokPerS: number;
  saveS: number;
}

/** Writes the missing checkpoints and times PyTorch bf16 on each shape (one process, same card). */
function checkpointsAndTorch(): { shapes: Record<string, TorchShape>; error?: string; torch?: string } {
  const script = fileURLToPath(new URL('../../bench/make_scale_checkpoints.py', import.meta.url));
  const r = spawnSync(
    'python3',
    [script, settings.scaleDir, ...settings.scaleShapes, '--reps', String(reps)],
    {
      encoding: 'utf8',
      timeout: 900_000,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  if (r.status !== 0)
    return { shapes: {}, error: (r.error?.message ?? `python3 exited ${r.status}`).slice(-400) };
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { shapes: Record<string, TorchShape> };
}

async function measureShape(shape: string, weights: WeightFormat, torch: TorchShape | undefined) {
  const dir = path.join(settings.scaleDir, shape);
  if (!existsSync(path.join(dir, 'config.json'))) throw new Error(`no checkpoint at ${dir}`);
  const rss0 = process.memoryUsage().rss;
  // A load cache of this row's own: the first load is a cold start, the second process reads what it wrote.
  const cache = mkdtempSync(path.join(settings.scaleDir, '.load-cache-'));
  const t0 = performance.now();
  const model = await loadModel(dir, { weightCache: cache, weightCacheMinBytes: 0 });
  const checkpointS = (performance.now() - t0) / 1000;
  const engine = await Engine.create(model, { executionProvider: 'webgpu', deviceDtype: 'float16', weights });
  const loadS = (performance.now() - t0) / 1000;
  const hostRssGiB = (process.memoryUsage().rss - rss0) / 2 ** 30;
  const gpuWeightsGiB = engine.device!.weights.bytes / 2 ** 30;
  const work = workload(model.config.vocabSize, model.config.bosTokenId, {
    reps,
    precomputeBatch: settings.scaleBatch,
  });
  console.error(
    `  ${shape} ${weights}: loaded in ${loadS.toFixed(1)} s (${gpuWeightsGiB.toFixed(2)} GiB on the GPU)`,
  );
  const { fullMs, missMs, hitMs, stored } = await blendTtfts(work, engine);
  const selections = await selectionTtfts(work, engine, stored, settings.scaleSelections);
  const byDtype = await tierTtfts(engine, stored, work.question, ['float16', 'int8'], reps);
  const decode = await decodeTokPerS(work, engine, 2048, 32);
  const precompute = await precomputeTokPerS(work, engine);
  await engine.dispose();
  const second = loadInChild({ model: dir, weights, provider: 'webgpu', cache });
  rmSync(cache, { recursive: true, force: true });
  console.error(
    `  ${shape} ${weights}: second load ${second.loadS.toFixed(1)} s (${JSON.stringify(second.cache)})`,
  );
  const row = {
    shape,
    parameters: parameterCount(model),
    weights,
    loadS,
    checkpointS,
    secondLoadS: second.loadS,
    secondCheckpointS: second.checkpointS,
    hostRssGiB,
    gpuWeightsGiB,
    fullPrefill4x512Ms: fullMs.ms,
    torchBf16Ms: torch?.torchBf16Ms ?? null,
    fullOverTorch: torch ? fullMs.ms / torch.torchBf16Ms : null,
    blendHitMs: hitMs.ms,
    blendHitOverFull: hitMs.ms / fullMs.ms,
    blendMissMs: missMs.ms,
    blendHitSteps: hitMs.steps,
    selections,
    tiers: byDtype.float16,
    tiersInt8: byDtype.int8,
    decode2048TokPerS: decode,
    torchDecodeTokPerS: torch?.torchDecodeTokPerS ?? null,
    precomputeStoredTokPerS: precompute.storedTokPerS,
    precomputeComputeTokPerS: precompute.computeTokPerS,
    precomputeBatch: settings.scaleBatch,
    run: '',
  };
  console.error(`  ${JSON.stringify(row)}`);
  return row;
}

/**
 * Rows of earlier scale runs on the same card (bench/results/gpu-scale.json), kept unless this run
 * measures the same shape and format again: a device call has a time limit, and the 8B rows take most of
 * one, so the table may be filled by several runs. Each row names its run (date, machine).
 */
function earlierRows(cardName: string): { rows: Row[]; runs: Run[] } {
  const file = path.join(RESULTS_DIR, 'gpu-scale.json');
  if (!existsSync(file)) return { rows: [], runs: [] };
  const old = JSON.parse(readFileSync(file, 'utf8')) as { card?: string; rows?: Row[]; runs?: Run[] };
  if (old.card !== cardName) return { rows: [], runs: [] };
  return { rows: old.rows ?? [], runs: old.runs ?? [] };
}

type Row = Awaited<ReturnType<typeof measureShape>>;
interface Run {
  run: string;
  machine: Record<string, unknown>;
  torch: unknown;
}

const cardName = card();
console.error(
  `gpu scale benchmark on ${cardName}: ${settings.scaleShapes.join(',')} × ${settings.scaleWeights.join(',')}`,
);
const anchors = settings.torch ? checkpointsAndTorch() : { shapes: {}, error: 'skipped (BENCH_TORCH=0)' };
const thisRun: Run = { run: new Date().toISOString(), machine: machine('webgpu'), torch: anchors };
const earlier = earlierRows(cardName);
const measured: Row[] = [];
const ORDER = ['125M', '1B', '8B'];
const allRows = () =>
  [
    ...earlier.rows.filter((r) => !measured.some((m) => m.shape === r.shape && m.weights === r.weights)),
    ...measured,
  ].sort((a, b) => ORDER.indexOf(a.shape) - ORDER.indexOf(b.shape) || a.weights.localeCompare(b.weights));
const save = () => {
  const rows = allRows();
  const runs = [...earlier.runs, thisRun].filter((r) => rows.some((x) => x.run === r.run));
  writeResult('gpu-scale.json', { card: cardName, runs, rows });
};
for (const shape of settings.scaleShapes) {
  for (const w of settings.scaleWeights) {
    measured.push({ ...(await measureShape(shape, w, anchors.shapes[shape])), run: thisRun.run });
    save(); // as it goes: a run stopped part-way keeps the rows it measured
  }
}
const rows = allRows();
printTable(
  [
    'shape',
    'params',
    'weights',
    'load s',
    '2nd load s',
    'GPU GiB',
    'full ms',
    'torch bf16 ms',
    'full/torch',
    'blend hit ms',
    'hit/full',
    'miss ms',
    'decode tok/s',
    'precompute tok/s',
  ],
  rows.map((r) => [
    r.shape,
    `${(r.parameters / 1e9).toFixed(2)}B`,
    r.weights,
    r.loadS,
    r.secondLoadS ?? '',
    r.gpuWeightsGiB,
    r.fullPrefill4x512Ms,
    r.torchBf16Ms ?? '',
    r.fullOverTorch ?? '',
    r.blendHitMs,
    r.blendHitOverFull,
    r.blendMissMs,
    r.decode2048TokPerS,
    r.precomputeStoredTokPerS,
  ]),
);
printTable(
  [
    'shape',
    'weights',
    'kv',
    'full ms',
    ...TIERS.flatMap((t) => [`${t} ms`, `${t}/full`]),
    'ram GB/s',
    'load ms (s3)',
  ],
  rows.flatMap((r) =>
    !r.tiers
      ? []
      : (
          [
            ['fp16', r.tiers],
            ['int8', r.tiersInt8],
          ] as const
        ).map(([kv, t]) => [
          r.shape,
          r.weights,
          kv,
          r.fullPrefill4x512Ms,
          ...TIERS.flatMap((tier) => [t[tier].blendMs, t[tier].blendMs / r.fullPrefill4x512Ms]),
          t.ram.uploadGBps ?? '',
          t.s3.loadMs,
        ]),
  ),
);
const withSelections = rows.filter((r) => r.selections?.length);
if (withSelections.length) {
  printTable(
    ['shape', 'weights', 'selection', 'miss ms', 'miss/full', 'hit ms', 'hit/full', 'lookahead ms'],
    withSelections.flatMap((r) =>
      r.selections.map((s) => [
        r.shape,
        r.weights,
        s.selection,
        s.missMs,
        s.missMs / r.fullPrefill4x512Ms,
        s.hitMs,
        s.hitMs / r.fullPrefill4x512Ms,
        s.hitSteps.lookahead ?? '',
      ]),
    ),
  );
}
save();
console.log(`wrote ${path.join(RESULTS_DIR, 'gpu-scale.json')}`);
console.log(
  `wrote ${writeResult(
    'gpu-scale.svg',
    barChart({
      title: `Time to first token, 4×512 + 32 tokens, WebGPU engine vs PyTorch bf16 (${cardName})`,
      xLabel: 'ms (lower is faster)',
      bars: rows.flatMap((r) => [
        { label: `${r.shape} ${r.weights} full prefill`, value: r.fullPrefill4x512Ms, group: r.shape },
        { label: `${r.shape} ${r.weights} blend 0.15 (GPU tier)`, value: r.blendHitMs, group: r.shape },
        ...(r.torchBf16Ms && r.weights === settings.scaleWeights[0]
          ? [{ label: `${r.shape} PyTorch bf16 full`, value: r.torchBf16Ms, group: r.shape }]
          : []),
      ]),
    }),
  )}`,
);
