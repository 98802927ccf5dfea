/** A query job's state and, once finished, its result or error (for `?async=1` and timed-out queries). */
import { Router } from 'express';
import { Job } from 'bullmq';
import { NotFoundError } from '../../core/errors.js';
import { decodeFailure, type BlendJobData, type BlendJobResult } from '../../core/queue/contracts.js';
import { redisCall } from '../../core/queue/redis.js';
import type { ApiDeps } from '../deps.js';
import { JobId, parseParam } from '../schemas.js';

export function jobsRouter(deps: ApiDeps): Router {
  const router = Router();

  router.get('/:id', async (req, res) => {
    const id = parseParam(JobId, req.params.id);
    const job = await redisCall(() => Job.fromId<BlendJobData, BlendJobResult>(deps.blendQueue, id));
    if (!job) throw new NotFoundError(`job ${JSON.stringify(id)} not found`);
    const state = await redisCall(() => job.getState());
    const out: Record<string, unknown> = { jobId: id, state };
    if (state === 'completed' && job.returnvalue) {
      const total = (job.finishedOn ?? Date.now()) - job.timestamp;
      out.result = { ...job.returnvalue, timings: { ...job.returnvalue.timings, totalMs: total } };
    }
    if (state === 'failed') out.error = decodeFailure(job.failedReason);
    res.json(out);
  });

  return router;
}
