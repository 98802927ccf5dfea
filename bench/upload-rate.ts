import ort from 'onnxruntime-node';
import { GraphBuilder, type DataType } from '../core/model/onnx/builder.js';
import { median, printTable, writeResult } from './common.js';
import { card } from './gpu-card.js';

/**
 * Host→GPU rate through onnxruntime-node's WebGPU provider (`npm run bench:gpu -- upload`): host tensors
 * fed to a session whose outputs stay on the GPU, the same bytes split into 1…64 inputs of one run, as
 * uint8 and float16; then whether an upload overlaps GPU work queued before it. Each timing ends with a
 * one-value readback, so every copy has landed. Writes bench/results/upload-rate.json.
 */

const MiB = 2 ** 20;
const REPS = 7;
// A CPU run checks the graphs where no adapter exists (the rates then mean nothing).
const EP = process.env.ORT_EP === 'cpu' ? 'cpu' : 'webgpu';

function passThrough(
  pieces: number,
  type: DataType,
): ort.InferenceSession.SessionOptions & { bytes: Uint8Array } {
  const g = new GraphBuilder(`upload_${pieces}`);
  for (let i = 0; i < pieces; i++)
    g.output(`o${i}`, g.o('Identity', [g.input(`x${i}`, type, ['n'])]), type, ['n']);
  const names = g.outputNames();
  return {
    bytes: g.toBytes(),
    executionProviders: [EP],
    preferredOutputLocation: Object.fromEntries(names.map((n) => [n, 'gpu-buffer' as const])),
  };
}

async function session(pieces: number, type: DataType) {
  const { bytes, ...opts } = passThrough(pieces, type);
  return ort.InferenceSession.create(bytes, opts);
}

/** A readback of one value of a device tensor: waits for everything queued before it. */
async function syncer(type: DataType, rank = 1) {
  const g = new GraphBuilder('sync');
  const dims = Array.from({ length: rank }, (_, i) => `d${i}`);
  const x = g.o('Reshape', [g.input('t', type, dims), g.int64s([-1])]);
  g.output('first', g.o('Cast', [g.o('Slice', [x, g.int64s([0]), g.int64s([1])])], { to: 1 }), 'float', [1]);
  const s = await ort.InferenceSession.create(g.toBytes(), { executionProviders: [EP] });
  return (t: ort.Tensor) => s.run({ t });
}

function hostTensor(type: DataType, bytes: number): ort.Tensor {
  return type === 'uint8'
    ? new ort.Tensor('uint8', new Uint8Array(bytes).fill(7), [bytes])
    : new ort.Tensor('float16', new Uint16Array(bytes / 2).fill(0x3c00), [bytes / 2]);
}

async function rate(total: number, pieces: number, type: DataType) {
  const s = await session(pieces, type);
  const sync = await syncer(type);
  const feeds = Object.fromEntries(
    Array.from({ length: pieces }, (_, i) => [`x${i}`, hostTensor(type, total / pieces)]),
  );
  const once = async () => {
    const t0 = performance.now();
    const out = await s.run(feeds);
    const hostMs = performance.now() - t0;
    await sync(out.o0);
    const ms = performance.now() - t0;
    for (const t of Object.values(out)) t.dispose();
    return { ms, hostMs };
  };
  await once();
  const runs = [];
  for (let i = 0; i < REPS; i++) runs.push(await once());
  await s.release();
  const ms = median(runs.map((r) => r.ms));
  return {
    totalMiB: total / MiB,
    pieces,
    type,
    ms,
    hostMs: median(runs.map((r) => r.hostMs)),
    GBps: total / ms / 1e6,
  };
}

/** fp16 MatMuls [2048, 4096]×[4096, 4096], chained on the GPU: work an upload may overlap. */
async function gpuWork(chain: number) {
  const g = new GraphBuilder('work');
  let x = g.o('Reshape', [g.input('x', 'float16', ['n']), g.int64s([2048, 4096])]);
  const w = g.o('Reshape', [g.input('w', 'float16', ['m']), g.int64s([4096, 4096])]);
  for (let i = 0; i < chain; i++) x = g.o('MatMul', [x, w]);
  g.output('y', x, 'float16', [2048, 4096]);
  const s = await ort.InferenceSession.create(g.toBytes(), {
    executionProviders: [EP],
    preferredOutputLocation: { y: 'gpu-buffer' },
  });
  const x0 = new ort.Tensor('float16', new Uint16Array(2048 * 4096).fill(0x1000), [2048 * 4096]);
  const w0 = new ort.Tensor('float16', new Uint16Array(4096 * 4096).fill(0x1000), [4096 * 4096]);
  // Inputs uploaded once, kept on the device.
  const up = await session(2, 'float16');
  const dev = await up.run({ x0, x1: w0 });
  return () => s.run({ x: dev.o0, w: dev.o1 });
}

async function overlap(total: number, pieces: number) {
  const work = await gpuWork(Number(process.env.UPLOAD_WORK_CHAIN ?? 16));
  const up = await session(pieces, 'uint8');
  const sync = await syncer('uint8');
  const syncH = await syncer('float16', 2);
  const feeds = Object.fromEntries(
    Array.from({ length: pieces }, (_, i) => [`x${i}`, hostTensor('uint8', total / pieces)]),
  );
  const time = async (f: () => Promise<void>) => {
    await f();
    const xs = [];
    for (let i = 0; i < REPS; i++) {
      const t0 = performance.now();
      await f();
      xs.push(performance.now() - t0);
    }
    return median(xs);
  };
  const workMs = await time(async () => void (await syncH((await work()).y)));
  const uploadMs = await time(async () => void (await sync((await up.run(feeds)).o0)));
  const bothMs = await time(async () => {
    const y = (await work()).y;
    const o = await up.run(feeds);
    await sync(o.o0);
    await syncH(y);
  });
  return { totalMiB: total / MiB, pieces, workMs, uploadMs, bothMs, sumMs: workMs + uploadMs };
}

const rows = [];
for (const type of ['uint8', 'float16'] as DataType[]) {
  for (const pieces of [1, 4, 16, 64]) {
    const r = await rate(64 * MiB, pieces, type);
    rows.push(r);
    console.error(JSON.stringify(r));
  }
}
rows.push(await rate(256 * MiB, 64, 'uint8'));
rows.push(await rate(8 * MiB, 1, 'uint8'));
rows.push(await rate(8 * MiB, 8, 'uint8'));
printTable(
  ['MiB', 'inputs', 'type', 'ms', 'host ms', 'GB/s'],
  rows.map((r) => [r.totalMiB, r.pieces, r.type, r.ms, r.hostMs, r.GBps]),
);
const overlaps = [await overlap(64 * MiB, 16), await overlap(64 * MiB, 1)];
printTable(
  ['MiB', 'inputs', 'GPU work ms', 'upload ms', 'both ms', 'sum ms'],
  overlaps.map((r) => [r.totalMiB, r.pieces, r.workMs, r.uploadMs, r.bothMs, r.sumMs]),
);
console.log(`wrote ${writeResult('upload-rate.json', { card: card(), rows, overlaps })}`);
