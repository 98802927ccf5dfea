/**
 * `npm start`: the API and both workers in one process (inference on one thread per worker), on local
 * defaults: a file store under DATA_DIR/kv and, when REDIS_URL is unset and nothing answers at
 * 127.0.0.1:6379, a redis-server child under DATA_DIR/redis. `--api-only` starts just the API (for
 * scale-out with `npm run worker` / `npm run precompute-worker` elsewhere).
 */
import { loadConfig, redactConfig } from '../core/config/index.js';
import { errorMessage } from '../core/errors.js';
import { createLogger } from '../core/ops/log.js';
import { isEntryPoint, untilSignal } from '../core/ops/process.js';
import { ensureRedis } from '../core/ops/redis-launcher.js';
import { startPrecomputeWorker, type PrecomputeWorker } from '../precompute/precompute-worker.js';
import { startBlendWorker, type BlendWorker } from '../worker/blend-worker.js';
import { startApi } from './server.js';

export async function serve(argv: string[] = []): Promise<void> {
  const apiOnly = argv.includes('--api-only');
  const config = loadConfig();
  const log = createLogger(config.logLevel, 'cacheblend');
  log.info('starting', { apiOnly, config: redactConfig(config) });
  const redis = await ensureRedis(config, log);
  const api = await startApi({ config, log: log.child('api') });
  let blend: BlendWorker | undefined;
  let precompute: PrecomputeWorker | undefined;
  if (!apiOnly) {
    [blend, precompute] = await Promise.all([
      startBlendWorker({ config, log: log.child('blend') }),
      startPrecomputeWorker({ config, log: log.child('precompute') }),
    ]);
  }
  await untilSignal(log, async () => {
    await api.close();
    await Promise.all([blend?.close(), precompute?.close()]);
    await redis.stop();
  });
}

if (isEntryPoint(import.meta.url)) {
  serve(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`cacheblend: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
