/**
 * `npm run precompute-worker`: a precompute worker alone (scale-out: any number of them on one Redis and
 * one bucket). METRICS_PORT, when set, serves its Prometheus metrics.
 */
import { runIfEntryPoint, runService } from '../core/ops/process.js';
import { startPrecomputeWorker } from './precompute-worker.js';

export function runPrecomputeWorker(): Promise<void> {
  return runService('precompute', (config, log) => startPrecomputeWorker({ config, log }), {
    metricsServer: true,
  });
}

runIfEntryPoint(import.meta.url, 'cacheblend precompute-worker', runPrecomputeWorker);
