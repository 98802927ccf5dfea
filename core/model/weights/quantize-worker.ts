/**
 * A worker of the quantization pool (see quantize-pool.ts): takes row blocks of a shared matrix off a
 * shared counter until none are left, quantizes each into the shared outputs, and counts itself done.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { quantizeBlockwise } from './quantize.js';
import { storedToFloat32 } from './weight.js';
import type { PoolJob } from './quantize-pool.js';

const errors = (workerData as { errors: MessagePort }).errors;

parentPort!.on('message', (job: PoolJob) => {
  const counter = new Int32Array(job.counter);
  try {
    const input = new Uint8Array(job.input);
    const width = job.dtype === 'float32' ? 4 : 2;
    const packed = new Uint8Array(job.packed);
    const scales = job.scaleType === 'float16' ? new Uint16Array(job.scales) : new Float32Array(job.scales);
    const { cols, rows, rowsPerTask, bytesPerRow, blocksPerRow } = job;
    for (;;) {
      const task = Atomics.add(counter, 0, 1);
      const from = task * rowsPerTask;
      if (from >= rows) break;
      const to = Math.min(rows, from + rowsPerTask);
      const rowsF32 = storedToFloat32(job.dtype, input.subarray(from * cols * width, to * cols * width));
      const q = quantizeBlockwise(rowsF32, to - from, cols, job.bits, job.scaleType);
      packed.set(q.packed, from * bytesPerRow);
      scales.set(q.scales as never, from * blocksPerRow);
    }
  } catch (err) {
    errors.postMessage(err instanceof Error ? err.message : String(err));
    Atomics.store(counter, 2, 1);
  }
  Atomics.add(counter, 1, 1);
  Atomics.notify(counter, 1);
});
