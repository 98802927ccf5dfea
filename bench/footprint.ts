/**
 * What a model costs to serve on the CPU engine: resident memory once loaded, time to build its sessions,
 * prefill and decode speed. For the README's "use your own model" table. Each model is measured in a
 * process of its own (RSS of a fresh process), from the shipped models and random Llama/Qwen-shaped ones
 * (speed and memory depend on the shape only).
 *
 *   npm run bench:footprint          all models; BENCH_REPS repetitions (medians)
 */
import { execFileSync } from 'node:child_process';
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

const MODELS: Record<string, () => Promise<LoadedModel>> = {
  stories260K: () => loadModel(`${projectRoot()}models/stories260K`),
  'cbqa-3M': () => loadModel(`${projectRoot()}models/cbqa-3M`),
  'llama-125M (random)': async () => createRandomModel(LLAMA_100M),
  'qwen2.5-0.5B shape (random)': async () => createRandomModel(QWEN_05B),
};

const PROMPT = 480;

interface Footprint {
  model: string;
  parameters: number;
  rssMiB: number;
  loadS: number;
  prefillTokPerS: number;
  decodeTokPerS: number;
  kvKiBPerToken: number;
}

async function measureOne(name: string, reps: number): Promise<Footprint> {
  const before = process.memoryUsage().rss;
  const t0 = performance.now();
  const model = await MODELS[name]();
  const engine = await Engine.create(model);
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
  const rssMiB = (process.memoryUsage().rss - before) / 2 ** 20;
  await engine.dispose();
  return {
    model: name,
    parameters: parameterCount(model),
    rssMiB,
    loadS,
    prefillTokPerS: (T / pre.median) * 1000,
    decodeTokPerS: 1000 / median(steps),
    // Stored caches are fp16: K and V, every layer.
    kvKiBPerToken: (2 * c.numLayers * c.numKvHeads * c.headDim * 2) / 1024,
  };
}

const [flag, name] = process.argv.slice(2);
const settings = loadBenchSettings();
if (flag === '--one') {
  process.stdout.write(`${JSON.stringify(await measureOne(name, settings.reps))}\n`);
} else {
  const self = fileURLToPath(import.meta.url);
  const rows: Footprint[] = [];
  for (const m of Object.keys(MODELS)) {
    console.error(`footprint: ${m} ...`);
    rows.push(
      JSON.parse(execFileSync(process.execPath, [self, '--one', m], { encoding: 'utf8' })) as Footprint,
    );
  }
  printTable(
    ['model', 'parameters', 'RSS MiB', 'load s', `prefill tok/s (${PROMPT})`, 'decode tok/s', 'KV KiB/token'],
    rows.map((r) => [
      r.model,
      `${(r.parameters / 1e6).toFixed(1)}M`,
      Math.round(r.rssMiB),
      r.loadS,
      Math.round(r.prefillTokPerS),
      r.decodeTokPerS,
      r.kvKiBPerToken,
    ]),
  );
  writeResult('footprint-cpu.json', { machine: machine('cpu'), promptTokens: PROMPT, rows });
}
