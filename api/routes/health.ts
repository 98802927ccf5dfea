/** Liveness, readiness (see ../readiness.ts), Prometheus metrics (behind their own token) and the OpenAPI document. */
import { Router } from 'express';
import { metrics } from '../../core/ops/metrics.js';
import type { ApiDeps } from '../deps.js';
import { metricsAccess } from '../middleware/auth.js';
import { openApiDocument } from '../openapi.js';
import { readinessChecks } from '../readiness.js';
import type { HealthBody, ReadyBody } from '../replies.js';

export function healthRouter(deps: ApiDeps): Router {
  const router = Router();
  const m = metrics();
  const checks = readinessChecks(deps);

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' } satisfies HealthBody);
  });

  router.get('/readyz', async (_req, res) => {
    const state = await checks();
    const failing = Object.entries(state).filter(([, v]) => v !== 'ok');
    if (failing.length === 0) {
      res.json({ status: 'ready', checks: state } satisfies ReadyBody);
      return;
    }
    res.status(503).json({
      error: {
        code: 'UNAVAILABLE',
        message: `not ready: ${failing.map(([k, v]) => `${k}: ${v}`).join('; ')}`,
        checks: state,
      },
    });
  });

  router.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument());
  });

  router.get('/metrics', metricsAccess(deps.config), async (_req, res) => {
    res.set('Content-Type', m.registry.contentType);
    res.send(await m.registry.metrics());
  });

  return router;
}
