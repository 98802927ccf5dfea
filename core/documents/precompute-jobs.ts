/**
 * Precompute jobs for chunks: the one place that adds them to the precompute queue. A job's id names the
 * chunk and its generation (lua/ingest.lua), so enqueueing a chunk twice at one generation keeps one job.
 */
import type { Queue } from 'bullmq';
import type { JobHistory } from '../config/index.js';
import { UnavailableError } from '../errors.js';
import {
  PRECOMPUTE_JOB,
  precomputeJobId,
  precomputeJobOptions,
  type PrecomputeJobData,
} from '../queue/contracts.js';
import { redisCall, type RedisClient } from '../queue/redis.js';

export interface ChunkJob {
  gen: number;
  data: PrecomputeJobData;
}

export class PrecomputeJobs {
  constructor(
    private readonly redis: RedisClient,
    private readonly queue: Queue | null,
    private readonly attempts: number,
    private readonly history: JobHistory,
  ) {}

  /**
   * Add precompute jobs; a job id that exists (the chunk's generation is queued or running) is kept. A job
   * of that id kept in the history (completed or failed) is removed first: the chunk is pending again, so
   * its job must run again.
   */
  async enqueue(jobs: readonly ChunkJob[]): Promise<void> {
    if (jobs.length === 0) return;
    if (!this.queue) throw new UnavailableError('no precompute queue configured');
    const queue = this.queue;
    const opts = precomputeJobOptions(this.attempts, this.history);
    await this.removeFinished(
      queue,
      jobs.map(({ gen, data }) => precomputeJobId(data.key, gen)),
    );
    await redisCall(
      () =>
        queue.addBulk(
          jobs.map(({ gen, data }) => ({
            name: PRECOMPUTE_JOB,
            data,
            opts: { jobId: precomputeJobId(data.key, gen), ...opts },
          })),
        ),
      'Redis (precompute queue)',
    );
  }

  /** Remove the jobs of these ids that sit in the queue's history (completed or failed). */
  private async removeFinished(queue: Queue, ids: string[]): Promise<void> {
    const p = this.redis.pipeline();
    for (const id of ids) p.zscore(queue.keys.completed, id).zscore(queue.keys.failed, id);
    const replies = (await redisCall(() => p.exec(), 'Redis (precompute queue)')) ?? [];
    const finished = ids.filter((_, i) => replies[2 * i]?.[1] != null || replies[2 * i + 1]?.[1] != null);
    for (const id of finished) await redisCall(() => queue.remove(id), 'Redis (precompute queue)');
  }
}
