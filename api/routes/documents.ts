/** Documents: ingest (chunk, store the manifest, enqueue precompute), status, delete. */
import { Router } from 'express';
import { documentIdSchema } from '../../core/documents/manifest.js';
import { NotFoundError } from '../../core/errors.js';
import { requestIdOf } from '../access-log.js';
import { requireModel, type ApiDeps } from '../deps.js';
import { DocumentBody, parseBody, parseParam } from '../schemas.js';

export function documentsRouter(deps: ApiDeps): Router {
  const router = Router();
  const { docs, config } = deps;

  router.post('/', async (req, res) => {
    const body = parseBody(DocumentBody, req.body);
    const r = await docs.ingest(body, requireModel(deps), config.chunkTokenBudget, {
      requestId: requestIdOf(req),
    });
    res.status(202).json({ id: r.id, chunks: r.chunks, enqueued: r.enqueued.length });
  });

  router.get('/:id', async (req, res) => {
    const id = parseParam(documentIdSchema, req.params.id);
    const status = await docs.status(id);
    if (!status) throw new NotFoundError(`document ${JSON.stringify(id)} not found`);
    res.json(status);
  });

  router.delete('/:id', async (req, res) => {
    const id = parseParam(documentIdSchema, req.params.id);
    const r = await docs.remove(id);
    if (!r) throw new NotFoundError(`document ${JSON.stringify(id)} not found`);
    res.json({ id, deleted: true, chunksDeleted: r.chunksDeleted });
  });

  return router;
}
