/**
 * The HTTP API (Express): JSON in and out, one router per resource, errors shaped by errors.ts. Every
 * reply carries the hardening headers; /v1 requests are authenticated (API_KEYS), rate limited per key,
 * and only then have their bodies parsed (depth-checked JSON up to MAX_BODY_BYTES).
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import { errorMessage } from '../core/errors.js';
import { silentLogger } from '../core/ops/log.js';
import { metrics } from '../core/ops/metrics.js';
import { watchBlendQueue } from '../core/ops/serving-metrics.js';
import { accessLog, requestIdOf } from './access-log.js';
import type { ApiDeps } from './deps.js';
import { HttpError, toHttpError } from './errors.js';
import { authenticate } from './middleware/auth.js';
import { methodNotAllowed } from './middleware/methods.js';
import { errorBodyFor } from './error-body.js';
import { jsonBody, requireJsonBody, securityHeaders } from './middleware/hardening.js';
import { perKeyRateLimit } from './middleware/rate-limit.js';
import { documentsRouter } from './routes/documents.js';
import { healthRouter } from './routes/health.js';
import { jobsRouter } from './routes/jobs.js';
import { openAiRouter } from './routes/openai.js';
import { queriesRouter } from './routes/queries.js';
import { uiRouter } from './routes/ui.js';

export function createApp(deps: ApiDeps): express.Express {
  const log = deps.log ?? silentLogger;
  watchBlendQueue(async () => {
    const c = await deps.blendQueue.getJobCounts('active', 'waiting', 'prioritized');
    return { active: c.active ?? 0, waiting: (c.waiting ?? 0) + (c.prioritized ?? 0) };
  });
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(accessLog(log));
  app.use(securityHeaders());
  app.use(requestTimer());

  app.use(methodNotAllowed(healthRouter(deps)));
  app.use(methodNotAllowed(uiRouter(deps, [deps.blendQueue, deps.precomputeQueue])));
  app.use('/v1', authenticate(deps.config), perKeyRateLimit(deps.config, deps.redis));
  app.use('/v1', requireJsonBody(), jsonBody(deps.config.maxBodyBytes));
  app.use('/v1/documents', methodNotAllowed(documentsRouter(deps)));
  app.use('/v1/query', methodNotAllowed(queriesRouter(deps)));
  app.use('/v1/jobs', methodNotAllowed(jobsRouter(deps)));
  app.use('/v1', methodNotAllowed(openAiRouter(deps)));

  app.use((req, _res, next) => {
    next(new HttpError(404, 'NOT_FOUND', `no route for ${req.method} ${req.path}`));
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = toHttpError(err);
    if (e.status >= 500) {
      log.error('request failed', {
        requestId: requestIdOf(req),
        method: req.method,
        path: req.path,
        status: e.status,
        error: errorMessage(err),
      });
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    res.set(e.headers);
    // An OpenAI client reads OpenAI's shape, also for what middleware refused (401, 429, a bad body).
    res.status(e.status).json({ error: errorBodyFor(req.path, e) });
  });
  return app;
}

/** Record each request's latency by method, matched route and status. */
function requestTimer() {
  const m = metrics();
  return (req: Request, res: Response, next: NextFunction) => {
    const t0 = performance.now();
    res.on('finish', () => {
      const path = req.route ? String(req.route.path) : '';
      const route = req.route ? `${req.baseUrl}${path === '/' ? '' : path}` : 'unmatched';
      m.httpDuration.observe(
        { method: req.method, route, status: String(res.statusCode) },
        (performance.now() - t0) / 1000,
      );
    });
    next();
  };
}
