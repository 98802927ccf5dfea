/** Documents: ingest (chunk, store the manifest, enqueue precompute), status, delete — each the caller's tenant's. */
import { Router } from 'express';
import { documentIdSchema } from '../../core/documents/manifest.js';
import { cacheSalt } from '../../core/documents/names.js';
import { NotFoundError } from '../../core/errors.js';
import { requestIdOf } from '../access-log.js';
import { requireModel, type ApiDeps } from '../deps.js';
import { tenantOf } from '../middleware/auth.js';
import { DocumentBody, parseBody, parseParam } from '../schemas.js';

export function documentsRouter(deps: ApiDeps): Router {
  const router = Router();
  const { docs, config } = deps;

  router.post('/', async (req, res) => {
    const body = parseBody(DocumentBody, req.body);
    const tenant = tenantOf(res);
    const r = await docs.ingest(body, requireModel(deps), {
      budget: config.chunkTokenBudget,
      tenant,
      salt: cacheSalt(tenant, config.shareChunkCache),
      requestId: requestIdOf(req),
    });
    res.status(202).json({ id: r.id, chunks: r.chunks, enqueued: r.enqueued.length });
  });

  router.get('/:id', async (req, res) => {
    const id = parseParam(documentIdSchema, req.params.id);
    const status = await docs.status(id, tenantOf(res));
    if (!status) throw new NotFoundError(`document ${JSON.stringify(id)} not found`);
    res.json(status);
  });

  router.delete('/:id', async (req, res) => {
    const id = parseParam(documentIdSchema, req.params.id);
    const r = await docs.remove(id, tenantOf(res));
    if (!r) throw new NotFoundError(`document ${JSON.stringify(id)} not found`);
    res.json({ id, deleted: true, chunksDeleted: r.chunksDeleted });
  });

  return router;
}
