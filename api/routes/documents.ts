/**
 * Documents: ingest (chunk, store the manifest, enqueue precompute), list, status, delete — each the
 * caller's tenant's (another tenant's documents are not found).
 */
import { Router } from 'express';
import { documentIdSchema } from '../../core/documents/manifest.js';
import { cacheSalt, documentName } from '../../core/documents/names.js';
import { NotFoundError, errorMessage } from '../../core/errors.js';
import { silentLogger } from '../../core/ops/log.js';
import { requestIdOf } from '../access-log.js';
import { requireModel, type ApiDeps } from '../deps.js';
import { tenantOf } from '../middleware/auth.js';
import type { DocumentAcceptedBody, DocumentDeletedBody, DocumentListBody } from '../replies.js';
import { DocumentBody, DocumentListQuery, parseBody, parseParam } from '../schemas.js';

export function documentsRouter(deps: ApiDeps): Router {
  const router = Router();
  const { docs, config } = deps;
  const log = deps.log ?? silentLogger;
  // This process's ranking index sees its own writes at once; other processes follow the change log.
  const reindex = (tenant: string, id: string) =>
    deps.retriever.sync
      .syncDocument(documentName(tenant, id))
      .catch((err) => log.warn('corpus index: sync failed', { id, error: errorMessage(err) }));

  router.post('/', async (req, res) => {
    const body = parseBody(DocumentBody, req.body);
    const tenant = tenantOf(res);
    const r = await docs.ingest(body, requireModel(deps), {
      budget: config.chunkTokenBudget,
      tenant,
      salt: cacheSalt(tenant, config.shareChunkCache),
      requestId: requestIdOf(req),
    });
    await reindex(tenant, r.id);
    res
      .status(202)
      .json({ id: r.id, chunks: r.chunks, enqueued: r.enqueued.length } satisfies DocumentAcceptedBody);
  });

  /** `?limit=N&cursor=<last id of the previous page>` → `{documents: [...], nextCursor}`. */
  router.get('/', async (req, res) => {
    const q = parseBody(DocumentListQuery, { ...req.query });
    res.json((await docs.list({ ...q, tenant: tenantOf(res) })) satisfies DocumentListBody);
  });

  router.get('/:id', async (req, res) => {
    const id = parseParam(documentIdSchema, req.params.id);
    const status = await docs.status(id, tenantOf(res));
    if (!status) throw new NotFoundError(`document ${JSON.stringify(id)} not found`);
    res.json(status);
  });

  router.delete('/:id', async (req, res) => {
    const id = parseParam(documentIdSchema, req.params.id);
    const tenant = tenantOf(res);
    const r = await docs.remove(id, tenant);
    if (!r) throw new NotFoundError(`document ${JSON.stringify(id)} not found`);
    await reindex(tenant, id);
    res.json({ id, deleted: true, chunksDeleted: r.chunksDeleted } satisfies DocumentDeletedBody);
  });

  return router;
}
