/**
 * Pages for people: the playground at `/` (static HTML and JS in api/public, no build step; its icon at
 * /favicon.ico, the benchmark tables it links to at /benchmarks), the OpenAPI
 * document browsable at `/docs` (Swagger UI from its npm package: works offline), and the jobs view of
 * both queues at `/jobs` (Bull Board, read-only, behind an operator key when API_KEYS is set).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import express, { Router } from 'express';
import swaggerUi from 'swagger-ui-express';
import type { ApiDeps } from '../deps.js';
import { projectRoot } from '../../core/util/fs.js';
import { operatorAccess } from '../middleware/auth.js';
import { openApiDocument } from '../openapi.js';

/** api/public beside this module, in the sources and in dist/ alike (the build copies it). */
const PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url));

export function uiRouter(deps: ApiDeps, queues: Queue[]): Router {
  const router = Router();
  router.get('/', (_req, res) => res.sendFile('index.html', { root: PUBLIC_DIR }));
  router.get('/favicon.ico', (_req, res) =>
    res.type('image/svg+xml').sendFile('favicon.svg', { root: PUBLIC_DIR, maxAge: '1d' }),
  );
  // The benchmark tables the playground links to (why blend is no faster on the tiny models), as text.
  router.get('/benchmarks', (_req, res, next) => {
    const file = path.join(projectRoot(), 'docs', 'benchmarks.md');
    if (!existsSync(file)) return next(); // an image without docs/: the 404
    res.type('text/markdown; charset=utf-8').sendFile(file);
  });
  router.use('/playground', express.static(PUBLIC_DIR, { index: false }));

  router.use('/docs', swaggerUi.serveFiles(openApiDocument()), swaggerUi.setup(openApiDocument()));

  const board = new ExpressAdapter();
  board.setBasePath('/jobs');
  createBullBoard({
    queues: queues.map((q) => new BullMQAdapter(q, { readOnlyMode: true })),
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'cacheblend jobs', hideDocsLink: true } },
  });
  router.use('/jobs', operatorAccess(deps.config), board.getRouter() as express.Router);
  return router;
}
