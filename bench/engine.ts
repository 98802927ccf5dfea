import { loadBenchSettings } from '../core/config/bench.js';
import { Engine } from '../core/model/engine.js';
import { loadLlama2cModel } from '../core/model/loaders/llama2c.js';
import { createRandomModel, LLAMA_100M, parameterCount } from '../core/model/random.js';
import type { LoadedModel } from '../core/model/types.js';
import { machine, matmulRate, median, printTable, timeMedian, writeResult } from './common.js';

/**
 * Engine benchmark: prefill and decode tokens/s for stories260K and a random ~100M-parameter Llama, and
 * prefill's achieved FLOP rate as a fraction of onnxruntime's own MatMul rate measured in the same run.
 * Also decode with the naive graph that returns the whole cache at every step, to show what returning
 * only the new K/V rows saves.
 */

const settings = loadBenchSettings();
const ep = settings.executionProvider;
const STORIES = settings.storiesDir;

/** Useful prefill FLOPs: every weight MatMul per token, causal attention pairs, logits of the last token. */
function prefillFlops(m: LoadedModel, T: number): number {
  const c = m.config;
  const w = m.weights.layers[0];
  const perLayerWeights = w.wq.size + w.wk.size + w.wv.size + w.wo.size + 3 * w.wGate.size;
  const linear = 2 * T * perLayerWeights * c.numLayers;
  const attention = 4 * c.numHeads * c.headDim * ((T * (T + 1)) / 2) * c.numLayers;
  return linear + attention + 2 * c.hiddenSize * c.vocabSize;
}

async function benchModel(name: string, model: LoadedModel, lengths: number[], rate: number, reps: number) {
  const engine = await Engine.create(model, { executionProvider: ep });
  const naive = await Engine.create(model, { executionProvider: ep, emitPresent: true });
  const rows = [];
  for (const T of lengths) {
    const ids = Array.from({ length: T }, (_, i) => 3 + ((i * 7919) % (model.config.vocabSize - 3)));
    await engine.forward(engine.newCache(T), ids.slice(0, 16)); // warm up
    const pre = await timeMedian(reps, () => engine.forward(engine.newCache(T + 40), ids));
    const gflops = prefillFlops(model, T) / pre.median / 1e6;
    const decodeMs = async (e: Engine) => {
      const cache = e.newCache(T + 40);
      await e.forward(cache, ids);
      const steps: number[] = [];
      for (let i = 0; i < 16; i++) {
        const t0 = performance.now();
        await e.forward(cache, [5 + i]);
        steps.push(performance.now() - t0);
      }
      return median(steps);
    };
    const dec = await decodeMs(engine);
    const decNaive = await decodeMs(naive);
    const row = {
      model: name,
      tokens: T,
      prefillMs: pre.median,
      prefillTokPerS: (T / pre.median) * 1000,
      prefillGflops: gflops,
      fractionOfMatmul: gflops / rate,
      decodeMsPerToken: dec,
      decodeTokPerS: 1000 / dec,
      naiveDecodeMsPerToken: decNaive,
    };
    rows.push(row);
    console.error(`  ${name} T=${T}: prefill ${pre.median.toFixed(0)} ms, decode ${dec.toFixed(2)} ms/token`);
  }
  await engine.dispose();
  await naive.dispose();
  return rows;
}

const reps = settings.reps;
console.error(`engine benchmark on ${ep}; measuring onnxruntime MatMul 2048³...`);
const rate = await matmulRate(2048, 5, ep);
const stories = await loadLlama2cModel(STORIES);
const big = createRandomModel(LLAMA_100M);
const rows = [
  // stories260K's own context limit is 512 positions.
  ...(await benchModel('stories260K', stories, [256, 512], rate, reps)),
  ...(await benchModel(
    `random Llama ${(parameterCount(big) / 1e6).toFixed(0)}M`,
    big,
    [512, 2048],
    rate,
    reps,
  )),
];
const rateAfter = await matmulRate(2048, 5, ep);
printTable(
  [
    'model',
    'tokens',
    'prefill tok/s',
    'prefill GFLOP/s',
    'of MatMul',
    'decode tok/s',
    'decode ms',
    'naive decode ms',
  ],
  rows.map((r) => [
    r.model,
    r.tokens,
    r.prefillTokPerS,
    r.prefillGflops,
    r.fractionOfMatmul,
    r.decodeTokPerS,
    r.decodeMsPerToken,
    r.naiveDecodeMsPerToken,
  ]),
);
console.log(
  `onnxruntime MatMul 2048³: ${rate.toFixed(0)} GFLOP/s before, ${rateAfter.toFixed(0)} GFLOP/s after`,
);
const path = writeResult(`engine-${ep}.json`, {
  machine: machine(ep),
  matmulGflops: { before: rate, after: rateAfter },
  model100M: { ...LLAMA_100M, parameters: parameterCount(big) },
  rows,
});
console.log(`wrote ${path}`);
