/**
 * Errors across the queue: a job's error crosses Redis as its data (code, message, field) and comes back
 * as properties — to the API waiting for the job (jobFailure: the HTTP status and field), in the failed
 * job's record, and to the worker's final-failure hook. A real redis-server, a real BullMQ worker.
 */
import { Queue, QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobFailure } from '../../api/query-jobs.js';
import { StorageError, invalidField, tooLargeField, type ErrorData } from '../../core/errors.js';
import { silentLogger } from '../../core/ops/log.js';
import { decodeFailure } from '../../core/queue/contracts.js';
import {
  closeRedis,
  createRedis,
  keyPrefix,
  waitForRedis,
  type RedisClient,
} from '../../core/queue/redis.js';
import { startQueueWorker, type QueueWorker } from '../../core/queue/worker.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';

const QUEUE = 'errors';
const PREFIX = 'queue-errors';
type Data = { fail: 'field' | 'tooLarge' | 'storage' };

let redis: RedisHandle;
let producer: RedisClient;
let queue: Queue<Data>;
let events: QueueEvents;
let worker: QueueWorker<Data, string>;
const finalFailures = new Map<string, ErrorData>();
const attempts = new Map<string, number>();

beforeAll(async () => {
  redis = await startRedis();
  const settings = { redisUrl: redis.url, redisClusterNodes: [] };
  producer = createRedis(settings, 'producer');
  await waitForRedis(producer);
  const prefix = keyPrefix(PREFIX);
  queue = new Queue<Data>(QUEUE, { connection: producer, prefix });
  events = new QueueEvents(QUEUE, { connection: createRedis(settings, 'worker'), prefix });
  await events.waitUntilReady();
  worker = await startQueueWorker<Data, string>({
    queue: QUEUE,
    connection: createRedis(settings, 'worker'),
    prefix: PREFIX,
    concurrency: 1,
    lockMs: 5_000,
    backoffMs: () => 10,
    log: silentLogger,
    async process(job) {
      attempts.set(job.id!, (attempts.get(job.id!) ?? 0) + 1);
      if (job.data.fail === 'field') throw invalidField('history.2.role', 'must be user or assistant');
      if (job.data.fail === 'tooLarge') throw tooLargeField('chunks.4', 'is over the chunk budget of 8');
      throw new StorageError('the store refused the write');
    },
    onFinalFailure: async (job, failure) => void finalFailures.set(job.id!, failure),
  });
});

afterAll(async () => {
  await worker?.close();
  await events?.close();
  await queue?.close();
  if (producer) await closeRedis(producer);
  await redis?.stop();
});

/** Run one job to its failure: the error its waiter gets, and the job as recorded. */
async function fail(id: string, data: Data, attemptsAllowed = 3) {
  const job = await queue.add('job', data, {
    jobId: id,
    attempts: attemptsAllowed,
    backoff: { type: 'custom' },
  });
  const err = await job.waitUntilFinished(events, 30_000).then(
    () => null,
    (e: unknown) => e,
  );
  return { err, record: (await queue.getJob(id))! };
}

describe('a failed job', () => {
  it('carries the field and code of a bad input to the API waiting for it (400, field)', async () => {
    const { err, record } = await fail('field', { fail: 'field' });
    const data = {
      code: 'INVALID_ARGUMENT',
      message: 'history.2.role: must be user or assistant',
      field: 'history.2.role',
    };
    expect(decodeFailure(record.failedReason)).toEqual(data);
    expect(jobFailure(err, 'field')).toMatchObject({
      status: 400,
      code: 'INVALID_ARGUMENT',
      message: data.message,
      extra: { jobId: 'field', field: 'history.2.role' },
    });
    expect(finalFailures.get('field')).toEqual(data);
    expect(attempts.get('field')).toBe(1); // the input's fault: never retried
  });

  it('carries the field of an input over a limit too (413, field)', async () => {
    const { err } = await fail('too-large', { fail: 'tooLarge' });
    expect(jobFailure(err, 'too-large')).toMatchObject({
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
      extra: { field: 'chunks.4' },
    });
  });

  it('retries a store failure, and names no field for it (503)', async () => {
    const { err } = await fail('storage', { fail: 'storage' }, 2);
    expect(attempts.get('storage')).toBe(2);
    const http = jobFailure(err, 'storage');
    expect(http).toMatchObject({ status: 503, code: 'STORAGE', message: 'the store refused the write' });
    expect(http.extra).not.toHaveProperty('field');
    expect(finalFailures.get('storage')).toEqual({ code: 'STORAGE', message: 'the store refused the write' });
  });
});
