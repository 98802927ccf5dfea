/**
 * One blend and one precompute worker process per GPU (`cacheblend serve --gpus 0,1`). A process, not a
 * thread, per GPU: WebGPU's adapter is chosen through the process environment (core/runtime/gpus.ts).
 * BullMQ spreads jobs over the workers; a worker process that dies is started again after a backoff.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/index.js';
import { InvalidArgumentError } from '../errors.js';
import { gpuAt, listGpus, type GpuInfo } from '../runtime/gpus.js';
import type { Logger } from './log.js';
import type { Service } from './process.js';

export type WorkerKind = 'blend' | 'precompute';

/** `0,1` or `all` → GPU indices, each checked against the host's GPUs. */
export function parseGpuList(value: string, gpus: readonly GpuInfo[] = listGpus()): number[] {
  if (value === 'all') {
    if (gpus.length === 0) throw new InvalidArgumentError('--gpus all: this host has no GPU');
    return gpus.map((g) => g.index);
  }
  if (!/^\d+(,\d+)*$/.test(value)) {
    throw new InvalidArgumentError(
      `--gpus must be a comma-separated list of GPU indices or "all", not "${value}"`,
    );
  }
  const indices = [...new Set(value.split(',').map(Number))];
  for (const i of indices) gpuAt(i, gpus);
  return indices;
}

const CLI = fileURLToPath(new URL('../../bin/cacheblend.js', import.meta.url));

/** The environment of a worker on GPU `index`: the parent's, plus what the parent resolved. */
function workerEnv(config: Config, redisUrl: string, index: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GPU_INDEX: String(index), REDIS_URL: redisUrl };
  // The API's process serves the metrics port; several workers can't share it.
  delete env.METRICS_PORT;
  env.EXECUTION_PROVIDER = config.executionProvider;
  return env;
}

interface Supervised {
  kind: WorkerKind;
  index: number;
  child: ChildProcess | null;
  restarts: number;
  timer: NodeJS.Timeout | null;
}

/** Start the worker processes and keep them running until closed. */
export function startGpuWorkers(
  config: Config,
  opts: { gpus: readonly number[]; redisUrl: string; log: Logger; kinds?: readonly WorkerKind[] },
): Service {
  if (config.executionProvider === 'cpu') {
    throw new InvalidArgumentError('--gpus needs EXECUTION_PROVIDER=webgpu or cuda (it is cpu)');
  }
  const kinds = opts.kinds ?? ['blend', 'precompute'];
  let closing = false;
  const workers: Supervised[] = opts.gpus.flatMap((index) =>
    kinds.map((kind) => ({ kind, index, child: null, restarts: 0, timer: null })),
  );
  const launch = (w: Supervised) => {
    const child = spawn(process.execPath, [CLI, 'worker', w.kind], {
      env: workerEnv(config, opts.redisUrl, w.index),
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    w.child = child;
    opts.log.info('started worker process', { kind: w.kind, gpu: w.index, pid: child.pid });
    child.once('exit', (code, signal) => {
      w.child = null;
      if (closing) return;
      // 1 s doubling to 30 s: a worker that can't start (a bad model, a lost GPU) doesn't spin.
      const delay = Math.min(30_000, 1_000 * 2 ** Math.min(w.restarts, 5));
      w.restarts += 1;
      opts.log.error('worker process exited: starting it again', {
        kind: w.kind,
        gpu: w.index,
        code,
        signal,
        inMs: delay,
      });
      w.timer = setTimeout(() => launch(w), delay);
    });
  };
  workers.forEach(launch);
  return {
    async close() {
      closing = true;
      await Promise.all(workers.map(stopWorker));
    },
  };
}

function stopWorker(w: Supervised): Promise<void> {
  if (w.timer) clearTimeout(w.timer);
  const child = w.child;
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 35_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
