/**
 * Pages for people: the playground at `/` (static HTML and JS in api/public, no build step), the OpenAPI
 * document browsable at `/docs` (Swagger UI from its npm package: works offline), and the jobs view of
 * both queues at `/jobs` (Bull Board, read-only, behind an operator key when API_KEYS is set).
 */
import { fileURLToPath } from 'node:url';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import express, { Router } from 'express';
import swaggerUi from 'swagger-ui-express';
import type { ApiDeps } from '../deps.js';
import { operatorAccess } from '../middleware/auth.js';
import { openApiDocument } from '../openapi.js';

/** api/public beside this module, in the sources and in dist/ alike (the build copies it). */
const PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url));

export function uiRouter(deps: ApiDeps, queues: Queue[]): Router {
  const router = Router();
  router.get('/', (_req, res) => res.sendFile('index.html', { root: PUBLIC_DIR }));
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
