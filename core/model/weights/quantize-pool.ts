/**
 * 4- and 8-bit quantization spread over worker threads. The graph builders ask for a weight synchronously,
 * so the calling thread posts the work and blocks on Atomics.wait until every worker has counted itself done:
 * an 8B model's 7 billion linear weights took minutes on one core (measured 240 s to load on the H200's
 * host), and the host has cores to spare while it loads.
 */
import os from 'node:os';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import {
  blockBytes,
  Q4_BLOCK,
  q4Blocks,
  quantizeBlockwise,
  type QMatrix,
  type QuantBits,
} from './quantize.js';
import type { StoredDtype, Weight } from './weight.js';

/** One matrix's work, posted to every worker. */
export interface PoolJob {
  /** The matrix as stored (fp32, fp16 or bf16 bytes): each worker widens its own rows. */
  input: SharedArrayBuffer;
  dtype: StoredDtype;
  packed: SharedArrayBuffer;
  scales: SharedArrayBuffer;
  scaleType: 'float' | 'float16';
  bits: QuantBits;
  rows: number;
  cols: number;
  rowsPerTask: number;
  bytesPerRow: number;
  blocksPerRow: number;
  /** Int32 [next task, workers done, failed]. */
  counter: SharedArrayBuffer;
}

/** Below this many values one thread is faster than the hand-off. */
const PARALLEL_MIN = 1 << 22;

/** A worker and the port its failures come back on (read synchronously, the caller being blocked). */
interface PoolWorker {
  worker: Worker;
  errors: MessagePort;
}

let workers: PoolWorker[] | null = null;

function spawn(): PoolWorker {
  const ts = import.meta.url.endsWith('.ts');
  const url = new URL(ts ? './quantize-worker.ts' : './quantize-worker.js', import.meta.url);
  const { port1, port2 } = new MessageChannel();
  const options = { workerData: { errors: port1 }, transferList: [port1] };
  // Under the tests the source runs through tsx, registered inside the worker.
  const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`;
  const worker = ts ? new Worker(boot, { eval: true, ...options }) : new Worker(url, options);
  worker.unref(); // an idle pool never keeps the process alive
  port2.unref();
  return { worker, errors: port2 };
}

function pool(): PoolWorker[] {
  workers ??= Array.from({ length: Math.min(16, os.availableParallelism()) }, spawn);
  return workers;
}

/**
 * quantizeBlockwise of a weight [rows, cols], on every core for large matrices (its stored bytes are
 * shared, each worker widening and quantizing blocks of rows); the same bits either way.
 */
export function quantizeParallel(
  w: Weight,
  scaleType: 'float' | 'float16' = 'float',
  bits: QuantBits = 4,
): QMatrix {
  const [rows, cols] = w.shape;
  if (w.size < PARALLEL_MIN || os.availableParallelism() < 2)
    return quantizeBlockwise(w.f32(), rows, cols, bits, scaleType);
  const nb = q4Blocks(cols);
  const raw = w.raw();
  const input = new SharedArrayBuffer(raw.byteLength);
  new Uint8Array(input).set(raw);
  const packed = new SharedArrayBuffer(rows * nb * blockBytes(bits));
  const scales = new SharedArrayBuffer(rows * nb * (scaleType === 'float16' ? 2 : 4));
  const counter = new SharedArrayBuffer(12);
  const flags = new Int32Array(counter);
  const all = pool();
  const job: PoolJob = {
    input,
    dtype: w.dtype,
    packed,
    scales,
    scaleType,
    bits,
    rows,
    cols,
    rowsPerTask: Math.max(1, Math.ceil(rows / (all.length * 8))),
    bytesPerRow: nb * blockBytes(bits),
    blocksPerRow: nb,
    counter,
  };
  for (const w of all) w.worker.postMessage(job);
  for (let done = Atomics.load(flags, 1); done < all.length; done = Atomics.load(flags, 1)) {
    Atomics.wait(flags, 1, done);
  }
  if (Atomics.load(flags, 2)) {
    const why = all.map((w) => receiveMessageOnPort(w.errors)?.message as string | undefined).find(Boolean);
    throw new Error(`${bits}-bit quantization failed: ${why ?? 'a worker failed'}`);
  }
  // Copied out of shared memory: the graphs hand these to onnxruntime as plain buffers.
  return {
    rows,
    cols,
    block: Q4_BLOCK,
    bits,
    packed: new Uint8Array(packed).slice(),
    scales: scaleType === 'float16' ? new Uint16Array(scales).slice() : new Float32Array(scales).slice(),
  };
}

/** quantizeParallel to 4 bits. */
export const quantizeQ4Parallel = (w: Weight, scaleType: 'float' | 'float16' = 'float') =>
  quantizeParallel(w, scaleType, 4);
