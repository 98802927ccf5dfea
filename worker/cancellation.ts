/**
 * A blend worker's side of query cancellation (api/query-control.ts): it follows the cancel channel and
 * aborts the named job if it runs it (BullMQ's Worker.cancelJob hands the job's processor an aborted
 * signal), and it drops a job marked cancelled when it takes it up.
 */
import type { Worker } from 'bullmq';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/ops/log.js';
import { blendCancelChannel, blendCancelledKey } from '../core/queue/contracts.js';
import {
  closeRedis,
  createRedis,
  keyPrefix,
  type RedisClient,
  type RedisSettings,
} from '../core/queue/redis.js';

export interface CancellationFollower {
  /** Whether the API marked this job cancelled (checked when a job starts). */
  isCancelled(jobId: string): Promise<boolean>;
  close(): Promise<void>;
}

export async function followCancellations(opts: {
  settings: RedisSettings;
  queuePrefix: string;
  /** A connection for the marks (not closed here). */
  redis: RedisClient;
  worker: Pick<Worker, 'cancelJob'>;
  log: Logger;
}): Promise<CancellationFollower> {
  const prefix = keyPrefix(opts.queuePrefix);
  const channel = blendCancelChannel(prefix);
  const subscriber = createRedis(opts.settings, 'worker');
  subscriber.on('message', (from: string, jobId: string) => {
    if (from === channel && opts.worker.cancelJob(jobId, 'the client went away')) {
      opts.log.info('query cancelled', { jobId });
    }
  });
  await subscriber.subscribe(channel).catch((err: unknown) =>
    opts.log.warn('cannot follow query cancellations yet (Redis); will when it reconnects', {
      error: errorMessage(err),
    }),
  );
  return {
    async isCancelled(jobId) {
      return (await opts.redis.exists(blendCancelledKey(prefix, jobId)).catch(() => 0)) > 0;
    },
    close: () => closeRedis(subscriber),
  };
}
