/**
 * A query job's state and, once finished, its result or error (for `?async=1` queries) — the caller's
 * tenant's jobs only: another tenant's job is not found.
 */
import { Router } from 'express';
import { Job } from 'bullmq';
import { DEFAULT_TENANT } from '../../core/config/index.js';
import { NotFoundError } from '../../core/errors.js';
import { decodeFailure, type BlendJobData, type BlendJobResult } from '../../core/queue/contracts.js';
import { redisCall } from '../../core/queue/redis.js';
import type { ApiDeps } from '../deps.js';
import { tenantOf } from '../middleware/auth.js';
import type { JobReplyBody } from '../replies.js';
import { JobId, parseParam } from '../schemas.js';

export function jobsRouter(deps: ApiDeps): Router {
  const router = Router();

  router.get('/:id', async (req, res) => {
    const id = parseParam(JobId, req.params.id);
    // The state first, then the job: states only move forward, so the job read after it is at least as new
    // (read the other way round, a job finishing in between showed "failed" with no reason or "completed"
    // with no result).
    const state = await redisCall(() => deps.blendQueue.getJobState(id));
    const job = await redisCall(() => Job.fromId<BlendJobData, BlendJobResult>(deps.blendQueue, id));
    if (!job || (job.data.tenant ?? DEFAULT_TENANT) !== tenantOf(res)) {
      throw new NotFoundError(`job ${JSON.stringify(id)} not found`);
    }
    const out: JobReplyBody = { jobId: id, state };
    if (state === 'completed' && job.returnvalue) {
      const total = (job.finishedOn ?? Date.now()) - job.timestamp;
      out.result = { ...job.returnvalue, timings: { ...job.returnvalue.timings, totalMs: total } };
    }
    if (state === 'failed') out.error = decodeFailure(job.failedReason);
    res.json(out);
  });

  return router;
}
