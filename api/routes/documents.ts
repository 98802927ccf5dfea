/** Documents: ingest (chunk, store the manifest, enqueue precompute), list, status, delete. */
import { Router } from 'express';
import { documentIdSchema } from '../../core/documents/manifest.js';
import { NotFoundError, errorMessage } from '../../core/errors.js';
import { silentLogger } from '../../core/ops/log.js';
import { requestIdOf } from '../access-log.js';
import { requireModel, type ApiDeps } from '../deps.js';
import { DocumentBody, DocumentListQuery, parseBody, parseParam } from '../schemas.js';

export function documentsRouter(deps: ApiDeps): Router {
  const router = Router();
  const { docs, config } = deps;
  const log = deps.log ?? silentLogger;
  // This process's ranking index sees its own writes at once; other processes follow the change log.
  const reindex = (id: string) =>
    deps.retriever.sync
      .syncDocument(id)
      .catch((err) => log.warn('corpus index: sync failed', { id, error: errorMessage(err) }));

  router.post('/', async (req, res) => {
    const body = parseBody(DocumentBody, req.body);
    const r = await docs.ingest(body, requireModel(deps), config.chunkTokenBudget, {
      requestId: requestIdOf(req),
    });
    await reindex(r.id);
    res.status(202).json({ id: r.id, chunks: r.chunks, enqueued: r.enqueued.length });
  });

  /** `?limit=N&cursor=<last id of the previous page>` → `{documents: [...], nextCursor}`. */
  router.get('/', async (req, res) => {
    const q = parseBody(DocumentListQuery, { ...req.query });
    res.json(await docs.list(q));
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
    await reindex(id);
    res.json({ id, deleted: true, chunksDeleted: r.chunksDeleted });
  });

  return router;
}
