/**
 * `cacheblend serve` (`npm start`): the API and both workers in one process (inference on one thread per
 * worker), on local defaults: a file store under DATA_DIR/kv and, when REDIS_URL is unset and nothing
 * answers at 127.0.0.1:6379, a redis-server child under DATA_DIR/redis. `--api-only` starts just the API;
 * `--gpus 0,1` (or `all`) starts a blend and a precompute worker process per GPU instead of in-process ones.
 * This launcher composes the deployables; none of them imports another.
 */
import { startApi } from '../api/server.js';
import { redactConfig } from '../core/config/index.js';
import { InvalidArgumentError } from '../core/errors.js';
import { parseGpuList, startGpuWorkers } from '../core/ops/gpu-workers.js';
import { runService, type Service } from '../core/ops/process.js';
import { ensureRedis } from '../core/ops/redis-launcher.js';
import { startPrecomputeWorker } from '../precompute/precompute-worker.js';
import { startBlendWorker } from '../worker/blend-worker.js';

export interface ServeOptions {
  apiOnly?: boolean;
  /** `--gpus`: `0,1` or `all`. */
  gpus?: string;
}

export function serve({ apiOnly = false, gpus }: ServeOptions = {}): Promise<void> {
  if (gpus !== undefined && apiOnly)
    throw new InvalidArgumentError('--gpus and --api-only exclude each other');
  const gpuList = gpus === undefined ? null : parseGpuList(gpus);
  return runService(
    'cacheblend',
    async (config, log, onAbandon) => {
      log.info('starting', { apiOnly, gpus: gpuList, config: redactConfig(config) });
      const redis = await ensureRedis(config, log);
      onAbandon(() => redis.stop());
      const api = await startApi({ config, log: log.child('api') });
      const workers: Service[] = apiOnly
        ? []
        : gpuList
          ? [startGpuWorkers(config, { gpus: gpuList, redisUrl: redis.url, log: log.child('gpus') })]
          : await Promise.all([
              startBlendWorker({ config, log: log.child('blend') }),
              startPrecomputeWorker({ config, log: log.child('precompute') }),
            ]);
      return {
        async close() {
          await api.close();
          await Promise.all(workers.map((w) => w.close()));
          log.info('closed the API and the workers', { workers: workers.length });
          await redis.stop();
        },
      };
    },
    { metricsServer: true },
  );
}
