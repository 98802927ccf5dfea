/**
 * What a model costs to serve on the CPU engine: resident memory once loaded, time to build its sessions,
 * prefill and decode speed. For the README's "use your own model" table. Each model is measured in a
 * process of its own (RSS of a fresh process), from the shipped models and random Llama/Qwen-shaped ones
 * (speed and memory depend on the shape only).
 *
 *   npm run bench:footprint          all models; BENCH_REPS repetitions (medians)
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBenchSettings } from '../core/config/bench.js';
import { Engine } from '../core/model/engine.js';
import { loadModel } from '../core/model/load.js';
import {
  createRandomModel,
  LLAMA_100M,
  parameterCount,
  type RandomModelShape,
} from '../core/model/random.js';
import type { LoadedModel } from '../core/model/types.js';
import { bytesPerWeight, type WeightFormat } from '../core/model/weights/format.js';
import type { Weight } from '../core/model/weights/weight.js';
import { projectRoot } from '../core/util/fs.js';
import { machine, median, printTable, timeMedian, writeResult } from './common.js';

/** Qwen2.5-0.5B's shape (494M parameters with its 151,936-token vocabulary). */
const QWEN_05B: RandomModelShape = {
  hiddenSize: 896,
  intermediateSize: 4864,
  numLayers: 24,
  numHeads: 14,
  numKvHeads: 2,
  vocabSize: 151_936,
};

interface ModelEntry {
  load: () => Promise<LoadedModel>;
  weights: WeightFormat;
}

const settings = loadBenchSettings();

/**
 * The shipped models and random shapes in fp32, then Hugging Face bf16 checkpoints of the 1B and 8B shapes
 * (written by bench/make-checkpoint.ts into BENCH_SCALE_DIR/1B and /8B, when there) in the formats that fit
 * this machine's 24 GiB: the checkpoint's weights are read when the graphs are built, never held whole.
 */
const MODELS: Record<string, ModelEntry> = {
  stories260K: { load: () => loadModel(`${projectRoot()}models/stories260K`), weights: 'fp32' },
  'cbqa-3M': { load: () => loadModel(`${projectRoot()}models/cbqa-3M`), weights: 'fp32' },
  'llama-125M (random)': { load: async () => createRandomModel(LLAMA_100M), weights: 'fp32' },
  'qwen2.5-0.5B shape (random)': { load: async () => createRandomModel(QWEN_05B), weights: 'fp32' },
};
const CHECKPOINTS: [string, WeightFormat[]][] = [
  ['1B', ['fp32', 'fp16', 'q4']],
  ['8B', ['q4']],
];
for (const [shape, formats] of CHECKPOINTS) {
  const dir = path.join(settings.scaleDir, shape);
  if (!existsSync(path.join(dir, 'config.json'))) continue;
  for (const weights of formats)
    MODELS[`${shape} bf16 checkpoint, ${weights}`] = { load: () => loadModel(dir), weights };
}

const PROMPT = 480;

interface Footprint {
  model: string;
  parameters: number;
  weights: WeightFormat;
  /** Bytes of the weights as the engine holds them (linear layers in `weights`, the rest as stored). */
  weightMiB: number;
  rssMiB: number;
  /** The process's peak resident set (load included). */
  peakRssMiB: number;
  loadS: number;
  prefillTokPerS: number;
  decodeTokPerS: number;
  kvKiBPerToken: number;
}

async function measureOne(name: string, reps: number): Promise<Footprint> {
  const before = process.memoryUsage().rss;
  const t0 = performance.now();
  const entry = MODELS[name];
  const model = await entry.load();
  const engine = await Engine.create(model, { weights: entry.weights });
  const loadS = (performance.now() - t0) / 1000;
  const c = model.config;
  const T = Math.min(PROMPT, c.maxPositionEmbeddings - 40);
  const ids = Array.from({ length: T }, (_, i) => 3 + ((i * 7919) % (c.vocabSize - 3)));
  await engine.forward(engine.newCache(T + 40), ids.slice(0, 8)); // warm up
  const pre = await timeMedian(reps, () => engine.forward(engine.newCache(T + 40), ids));
  const cache = engine.newCache(T + 40);
  await engine.forward(cache, ids);
  const steps: number[] = [];
  for (let i = 0; i < 16; i++) {
    const s = performance.now();
    await engine.forward(cache, [5 + i]);
    steps.push(performance.now() - s);
  }
  // Resident memory once what loading left behind is collected (the conversion buffers are garbage by then).
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3 && gc; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  const rssMiB = (process.memoryUsage().rss - before) / 2 ** 20;
  await engine.dispose();
  return {
    model: name,
    parameters: parameterCount(model),
    weights: entry.weights,
    weightMiB: weightBytes(model, entry.weights) / 2 ** 20,
    rssMiB,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    loadS,
    prefillTokPerS: (T / pre.median) * 1000,
    decodeTokPerS: 1000 / median(steps),
    // Stored caches are fp16: K and V, every layer.
    kvKiBPerToken: (2 * c.numLayers * c.numKvHeads * c.headDim * 2) / 1024,
  };
}

/** The weights' bytes in a format: linear layers (and an untied head) as the format stores them, the rest as loaded. */
function weightBytes(m: LoadedModel, format: WeightFormat): number {
  const w = m.weights;
  const width = (x: Weight) => (x.dtype === 'float32' ? 4 : 2);
  const linear = (x: Weight) => x.size * bytesPerWeight(format);
  let n = w.embedTokens.size * width(w.embedTokens) + w.finalNorm.size * 4;
  // A tied head is the embedding table as a product's weights: held twice, once in the format.
  n += linear(w.lmHead);
  for (const l of w.layers) {
    for (const x of [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown]) n += linear(x);
    for (const x of [l.attnNorm, l.mlpNorm, l.bq, l.bk, l.bv]) n += (x?.size ?? 0) * 4;
  }
  return n;
}

const [flag, name] = process.argv.slice(2);
if (flag === '--one') {
  process.stdout.write(`${JSON.stringify(await measureOne(name, settings.reps))}\n`);
} else {
  const self = fileURLToPath(import.meta.url);
  const rows: Footprint[] = [];
  for (const m of Object.keys(MODELS)) {
    console.error(`footprint: ${m} ...`);
    rows.push(
      JSON.parse(
        execFileSync(process.execPath, ['--expose-gc', self, '--one', m], { encoding: 'utf8' }),
      ) as Footprint,
    );
  }
  printTable(
    [
      'model',
      'parameters',
      'weights MiB',
      'RSS MiB',
      'RSS / weights',
      'peak RSS MiB',
      'load s',
      `prefill tok/s (${PROMPT})`,
      'decode tok/s',
      'KV KiB/token',
    ],
    rows.map((r) => [
      r.model,
      `${(r.parameters / 1e6).toFixed(1)}M`,
      Math.round(r.weightMiB),
      Math.round(r.rssMiB),
      r.rssMiB / r.weightMiB,
      Math.round(r.peakRssMiB),
      r.loadS,
      Math.round(r.prefillTokPerS),
      r.decodeTokPerS,
      r.kvKiBPerToken,
    ]),
  );
  writeResult('footprint-cpu.json', { machine: machine('cpu'), promptTokens: PROMPT, rows });
}
