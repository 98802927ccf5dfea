/**
 * One start in a process of its own: load a checkpoint and build its engine, then print what it took as
 * one JSON line. bench:gpu's scale run spawns it after its own (first) load, so `secondLoadS` is what a
 * restarted worker pays with the load cache that first load wrote (core/model/weights/load-cache.ts).
 *
 *   node dist/bench/load-once.js --model DIR --weights q8 [--provider webgpu] [--cache DIR|off]
 *   → {"loadS": 3.1, "checkpointS": 0.4, "cache": {"fingerprintHits": 1, "matrixHits": 225, ...}}
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Engine } from '../core/model/engine.js';
import type { ExecutionProvider } from '../core/model/host/provider.js';
import { loadModel } from '../core/model/load.js';
import type { WeightFormat } from '../core/model/weights/format.js';
import { loadCacheStats } from '../core/model/weights/load-cache.js';

export interface LoadOnce {
  /** Seconds from the start of the load to an engine that has run its first token. */
  loadS: number;
  /** Of which reading the checkpoint's metadata and fingerprinting it. */
  checkpointS: number;
  cache: typeof loadCacheStats;
}

export interface LoadOnceOptions {
  model: string;
  weights: WeightFormat;
  provider: ExecutionProvider;
  /** The load cache's root (a folder, or off); default: beside the checkpoint. */
  cache?: string;
}

/** Load and build once, here. */
export async function loadOnce(o: LoadOnceOptions): Promise<LoadOnce> {
  const t0 = performance.now();
  const model = await loadModel(o.model, {
    ...(o.cache && { weightCache: o.cache }),
    weightCacheMinBytes: 0,
  });
  const checkpointS = (performance.now() - t0) / 1000;
  const engine = await Engine.create(model, {
    executionProvider: o.provider,
    weights: o.weights,
    ...(o.provider === 'webgpu' && { deviceDtype: 'float16' as const }),
  });
  const loadS = (performance.now() - t0) / 1000;
  await engine.dispose();
  return { loadS, checkpointS, cache: { ...loadCacheStats } };
}

/** Load and build once in a new `node` process (nothing of this one's warm state carried over). */
export function loadInChild(o: LoadOnceOptions): LoadOnce {
  const script = fileURLToPath(import.meta.url);
  const args = ['--model', o.model, '--weights', o.weights, '--provider', o.provider];
  if (o.cache) args.push('--cache', o.cache);
  const r = spawnSync(process.execPath, [script, ...args], {
    encoding: 'utf8',
    timeout: 1_800_000,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`load-once exited ${r.status ?? r.signal}: ${r.error?.message ?? ''}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as LoadOnce;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      weights: { type: 'string', default: 'fp32' },
      provider: { type: 'string', default: 'cpu' },
      cache: { type: 'string' },
    },
  });
  if (!values.model) throw new Error('--model DIR is required');
  const r = await loadOnce({
    model: values.model,
    weights: values.weights as WeightFormat,
    provider: values.provider as ExecutionProvider,
    cache: values.cache,
  });
  console.log(JSON.stringify(r));
}
