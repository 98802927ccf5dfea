/**
 * `npm run precompute-worker`: a precompute worker alone (scale-out: any number of them on one Redis and
 * one bucket). METRICS_PORT, when set, serves its Prometheus metrics.
 */
import { loadConfig } from '../core/config/index.js';
import { errorMessage } from '../core/errors.js';
import { createLogger } from '../core/ops/log.js';
import { isEntryPoint, metricsPortFromEnv, startMetricsServer, untilSignal } from '../core/ops/process.js';
import { startPrecomputeWorker } from './precompute-worker.js';

export async function runPrecomputeWorker(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel, 'precompute');
  const port = metricsPortFromEnv();
  const worker = await startPrecomputeWorker({ config, log });
  const server = port === null ? null : await startMetricsServer(port, config.host, log);
  await untilSignal(log, async () => {
    server?.close();
    await worker.close();
  });
}

if (isEntryPoint(import.meta.url)) {
  runPrecomputeWorker().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`cacheblend precompute-worker: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
