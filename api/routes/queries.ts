/**
 * Queries: one blend job per request. Answered when the job finishes (bounded wait), at once with a job id
 * (`?async=1`), or as Server-Sent Events (`stream: true`): `job`, then `token` events (text deltas), then
 * `done` or `error`.
 */
import { Router, type Request, type Response } from 'express';
import type { BlendJobData, BlendProgress } from '../../core/queue/contracts.js';
import { requestIdOf } from '../access-log.js';
import { requireModel, type ApiDeps } from '../deps.js';
import { HttpError } from '../errors.js';
import { tenantOf } from '../middleware/auth.js';
import { enqueueQuery, jobFailure, newJobId, presentResult, waitForJob } from '../query-jobs.js';
import { QueryBody, parseBody } from '../schemas.js';

export function queriesRouter(deps: ApiDeps): Router {
  const router = Router();

  router.post('/', async (req, res) => {
    const t0 = performance.now();
    const body = parseBody(QueryBody, req.body);
    const model = requireModel(deps);
    const async = req.query.async === '1' || req.query.async === 'true';
    const data: BlendJobData = {
      question: body.question,
      chunks: await deps.docs.chunkRefs(body.documents, tenantOf(res)),
      documents: body.documents,
      fingerprint: model.fingerprint,
      mode: body.mode as BlendJobData['mode'],
      ...(body.ratio !== undefined && { ratio: body.ratio }),
      maxTokens: body.maxTokens,
      temperature: body.temperature,
      seed: body.seed,
      stream: body.stream && req.query.async === undefined,
      requestId: requestIdOf(req),
    };
    const jobId = newJobId();
    if (async) {
      await enqueueQuery(deps, jobId, data);
      res.status(202).json({ jobId });
    } else if (data.stream) {
      await streamQuery(deps, req, res, jobId, data, t0);
    } else {
      const job = await enqueueQuery(deps, jobId, data);
      res.json(presentResult(await waitForJob(deps, job, jobId), jobId, t0));
    }
  });

  return router;
}

async function streamQuery(
  deps: ApiDeps,
  _req: Request,
  res: Response,
  jobId: string,
  data: BlendJobData,
  t0: number,
): Promise<void> {
  let streamed = '';
  const send = (event: string, payload: unknown) => {
    if (!res.writableEnded && !res.destroyed)
      res.write(`event: ${event}\ndata: ${JSON.stringify(payload)}\n\n`);
  };
  const onProgress = ({ jobId: id, data: p }: { jobId: string; data: unknown }) => {
    if (id !== jobId || typeof p !== 'object' || p === null) return;
    streamed += (p as BlendProgress).delta;
    send('token', p);
  };
  // Listen before the job exists, so no token event is missed.
  deps.blendEvents.on('progress', onProgress);
  try {
    const job = await enqueueQuery(deps, jobId, data); // before any byte is written: a Redis error stays a JSON 503
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    send('job', { jobId });
    try {
      const result = await waitForJob(deps, job, jobId);
      if (result.answer.length > streamed.length && result.answer.startsWith(streamed)) {
        send('token', { delta: result.answer.slice(streamed.length), tokens: result.tokens.length });
      }
      send('done', presentResult(result, jobId, t0));
    } catch (err) {
      const e = err instanceof HttpError ? err : jobFailure(err, jobId);
      send('error', { error: { code: e.code, message: e.message, ...e.extra } });
    }
    res.end();
  } finally {
    deps.blendEvents.off('progress', onProgress);
  }
}
