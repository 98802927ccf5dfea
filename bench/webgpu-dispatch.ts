import ort from 'onnxruntime-node';
import { loadBenchSettings } from '../core/config/bench.js';
import { GraphBuilder } from '../core/model/onnx/builder.js';
import { median, printTable, writeResult } from './common.js';

/**
 * Per-kernel cost of onnxruntime's WebGPU provider from Node: a chain of `n` small Adds ([1, 768], so the
 * GPU work is nothing), device-resident, timed per run and divided by n, under the provider options that
 * might change it. This is the floor under every device graph: decode runs ~180 kernels per token.
 * Writes bench/results/webgpu-dispatch.json.
 */

const settings = loadBenchSettings();
const n = settings.dispatchOps;
const reps = settings.repsGiven ?? 20;

function chain(): Uint8Array {
  const g = new GraphBuilder('chain');
  let x = g.input('x', 'float', [1, 768]);
  const one = g.weight('one', new Float32Array(768).fill(1e-3), [768]);
  for (let i = 0; i < n; i++) x = g.o('Add', [x, one]);
  g.output('y', x, 'float', [1, 768]);
  return g.toBytes();
}

const variants: [string, ort.InferenceSession.SessionOptions][] = [
  ['default', { executionProviders: ['webgpu'] }],
  [
    'validationMode disabled',
    { executionProviders: [{ name: 'webgpu', validationMode: 'disabled' } as never] },
  ],
  [
    'maxNumPendingDispatches 256',
    {
      executionProviders: ['webgpu'],
      extra: { ep: { webgpuexecutionprovider: { maxNumPendingDispatches: '256' } } },
    },
  ],
  [
    'both',
    {
      executionProviders: [{ name: 'webgpu', validationMode: 'disabled' } as never],
      extra: { ep: { webgpuexecutionprovider: { maxNumPendingDispatches: '256' } } },
    },
  ],
];

const rows: { variant: string; usPerKernel: number; runMs: number }[] = [];
const bytes = chain();
const x = new ort.Tensor('float32', new Float32Array(768), [1, 768]);
for (const [name, opts] of variants) {
  try {
    const s = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'disabled', ...opts });
    await s.run({ x });
    const times: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await s.run({ x }); // the output comes back to the host: the run's kernels have all finished
      times.push(performance.now() - t0);
    }
    await s.release();
    rows.push({ variant: name, usPerKernel: (median(times) * 1000) / n, runMs: median(times) });
  } catch (e) {
    console.error(`${name}: ${(e as Error).message.split('\n')[0]}`);
  }
}
printTable(
  ['provider options', `µs per kernel (${n} Adds)`, 'run ms'],
  rows.map((r) => [r.variant, r.usPerKernel, r.runMs]),
);
console.log(`wrote ${writeResult('webgpu-dispatch.json', { kernels: n, reps, rows })}`);
