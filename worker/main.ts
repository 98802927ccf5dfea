/**
 * `npm run worker`: a blend worker alone (scale-out: any number of them on one Redis and one bucket).
 * METRICS_PORT, when set, serves its Prometheus metrics.
 */
import { runIfEntryPoint, runService } from '../core/ops/process.js';
import { startBlendWorker } from './blend-worker.js';

export function runBlendWorker(): Promise<void> {
  return runService('blend', (config, log) => startBlendWorker({ config, log }), { metricsServer: true });
}

runIfEntryPoint(import.meta.url, 'cacheblend worker', runBlendWorker);
