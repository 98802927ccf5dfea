/**
 * Queries: one blend job per request. Answered when the job finishes (bounded wait), at once with a job id
 * (`?async=1`), or as Server-Sent Events (`stream: true`): `job`, then `token` events (text deltas), then
 * `done` or `error`.
 */
import { Router, type Response } from 'express';
import type { BlendJobData } from '../../core/queue/contracts.js';
import { requestIdOf } from '../access-log.js';
import type { ApiDeps } from '../deps.js';
import { HttpError } from '../errors.js';
import { tenantOf } from '../middleware/auth.js';
import {
  clientGone,
  enqueueQuery,
  jobFailure,
  newJobId,
  presentResult,
  runStreamed,
  waitForJob,
} from '../query-jobs.js';
import { planQuery, stopList } from '../query-plan.js';
import type { QueryAcceptedBody } from '../replies.js';
import { QueryBody, parseBody } from '../schemas.js';
import { serviceError } from '../error-body.js';
import { EventStream } from '../sse.js';

export function queriesRouter(deps: ApiDeps): Router {
  const router = Router();

  router.post('/', async (req, res) => {
    const t0 = performance.now();
    const gone = clientGone(res); // a client that leaves cancels its query
    const body = parseBody(QueryBody, req.body);
    const async = req.query.async === '1' || req.query.async === 'true';
    const data = await planQuery(deps, {
      ...body,
      searchCorpus: true,
      tenant: tenantOf(res),
      stop: stopList(body.stop),
      stream: body.stream && req.query.async === undefined,
      requestId: requestIdOf(req),
    });
    const jobId = newJobId();
    if (async) {
      await enqueueQuery(deps, jobId, data);
      res.status(202).json({ jobId } satisfies QueryAcceptedBody);
    } else if (data.stream) {
      await streamQuery(deps, gone, res, jobId, data, t0);
    } else {
      const job = await enqueueQuery(deps, jobId, data);
      res.json(presentResult(await waitForJob(deps, job, jobId, gone), jobId, t0));
    }
  });

  return router;
}

async function streamQuery(
  deps: ApiDeps,
  gone: AbortSignal,
  res: Response,
  jobId: string,
  data: BlendJobData,
  t0: number,
): Promise<void> {
  const stream = new EventStream(res);
  try {
    const result = await runStreamed(
      deps,
      jobId,
      data,
      {
        started: () => {
          stream.open();
          stream.send({ jobId }, 'job');
        },
        delta: (delta, tokens) => stream.send({ delta, tokens }, 'token'),
      },
      gone,
    );
    stream.send(presentResult(result, jobId, t0), 'done');
  } catch (err) {
    if (!stream.isOpen) throw err; // nothing written yet: a JSON error reply
    stream.send({ error: serviceError(err instanceof HttpError ? err : jobFailure(err, jobId)) }, 'error');
  }
  stream.end();
}
