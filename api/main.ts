/**
 * `npm run api`: the HTTP API alone (scale-out: any number behind a load balancer, with workers started
 * elsewhere). Its own GET /metrics serves its metrics (behind METRICS_TOKEN, or on METRICS_PORT when
 * set). `npm start` (cacheblend serve) runs everything.
 */
import { runIfEntryPoint, runService } from '../core/ops/process.js';
import { startApi } from './server.js';

export function runApi(): Promise<void> {
  return runService('api', (config, log) => startApi({ config, log }), { metricsServer: true });
}

runIfEntryPoint(import.meta.url, 'cacheblend api', runApi);
