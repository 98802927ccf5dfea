/**
 * `cacheblend serve` (`npm start`): the API and both workers in one process (inference on one thread per
 * worker), on local defaults: a file store under DATA_DIR/kv and, when REDIS_URL is unset and nothing
 * answers at 127.0.0.1:6379, a redis-server child under DATA_DIR/redis. `--api-only` starts just the API.
 * This launcher composes the deployables; none of them imports another.
 */
import { startApi } from '../api/server.js';
import { redactConfig } from '../core/config/index.js';
import { runService, type Service } from '../core/ops/process.js';
import { ensureRedis } from '../core/ops/redis-launcher.js';
import { startPrecomputeWorker } from '../precompute/precompute-worker.js';
import { startBlendWorker } from '../worker/blend-worker.js';

export function serve(argv: string[] = []): Promise<void> {
  const apiOnly = argv.includes('--api-only');
  return runService(
    'cacheblend',
    async (config, log) => {
      log.info('starting', { apiOnly, config: redactConfig(config) });
      const redis = await ensureRedis(config, log);
      const api = await startApi({ config, log: log.child('api') });
      const workers: Service[] = apiOnly
        ? []
        : await Promise.all([
            startBlendWorker({ config, log: log.child('blend') }),
            startPrecomputeWorker({ config, log: log.child('precompute') }),
          ]);
      return {
        async close() {
          await api.close();
          await Promise.all(workers.map((w) => w.close()));
          await redis.stop();
        },
      };
    },
    { metricsServer: true },
  );
}
