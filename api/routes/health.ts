/** Liveness, readiness (Redis, object store, model), Prometheus metrics and the OpenAPI document. */
import { Router } from 'express';
import { errorMessage } from '../../core/errors.js';
import { metrics } from '../../core/ops/metrics.js';
import { pingRedis } from '../../core/queue/redis.js';
import { withTimeout } from '../../core/util/time.js';
import { modelState, type ApiDeps } from '../deps.js';
import { openApiDocument } from '../openapi.js';

export function healthRouter(deps: ApiDeps): Router {
  const router = Router();
  const m = metrics();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    const checks = await readinessChecks(deps);
    const failing = Object.entries(checks).filter(([, v]) => v !== 'ok');
    if (failing.length === 0) {
      res.json({ status: 'ready', checks });
      return;
    }
    res.status(503).json({
      error: {
        code: 'UNAVAILABLE',
        message: `not ready: ${failing.map(([k, v]) => `${k}: ${v}`).join('; ')}`,
        checks,
      },
    });
  });

  router.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument());
  });

  router.get('/metrics', async (_req, res) => {
    res.set('Content-Type', m.registry.contentType);
    res.send(await m.registry.metrics());
  });

  return router;
}

/** Each dependency's state: 'ok' or why not. */
async function readinessChecks(deps: ApiDeps): Promise<Record<string, string>> {
  const state = (p: Promise<unknown>) =>
    p.then(
      () => 'ok',
      (err: unknown) => errorMessage(err),
    );
  const [redis, store] = await Promise.all([
    state(pingRedis(deps.redis, 2_000)),
    state(withTimeout(deps.store.ping(), 3_000, 'object store ping')),
  ]);
  return { redis, store, model: modelState(deps) };
}
