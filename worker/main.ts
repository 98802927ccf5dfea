/**
 * `npm run worker`: a blend worker alone (scale-out: any number of them on one Redis and one bucket).
 * METRICS_PORT, when set, serves its Prometheus metrics.
 */
import { loadConfig } from '../core/config/index.js';
import { errorMessage } from '../core/errors.js';
import { createLogger } from '../core/ops/log.js';
import { isEntryPoint, metricsPortFromEnv, startMetricsServer, untilSignal } from '../core/ops/process.js';
import { startBlendWorker } from './blend-worker.js';

export async function runBlendWorker(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel, 'blend');
  const port = metricsPortFromEnv();
  const worker = await startBlendWorker({ config, log });
  const server = port === null ? null : await startMetricsServer(port, config.host, log);
  await untilSignal(log, async () => {
    server?.close();
    await worker.close();
  });
}

if (isEntryPoint(import.meta.url)) {
  runBlendWorker().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`cacheblend worker: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
