/**
 * Recovery after a store outage, through a TCP proxy in front of a real s3rver that answers every request
 * with an S3 InternalError (HTTP 500) for 15 s. Precompute attempts back off exponentially (1 s doubling
 * to 60 s), so the retry a job schedules at its last failure grows with how long the store has been
 * failing: after 15 s it is 12–20 s away, after a minute 45–75 s. Waiting that out after the store is
 * back is what made acknowledged documents stay pending long after the outage. The precompute worker
 * probes the store once an attempt failed on it and, when a probe write succeeds, retries the jobs
 * waiting out a backoff at once: every document is ready within a few seconds of the store's return.
 * Chunks that failed for good during the outage (no attempts left: PRECOMPUTE_ATTEMPTS=2 here, the
 * default 12 lasts about 6 minutes) are retried at once too, not after the reconciler's 60 s wait.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyPrefix } from '../../core/queue/redis.js';
import { PRECOMPUTE_QUEUE } from '../../core/queue/contracts.js';
import { STORY_SETS } from '../helpers/models.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startRedis, startS3, type RedisHandle, type S3Handle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

const DOCUMENTS = 8;
const OUTAGE_MS = 15_000;
/** docs/operations.md: ready within this long of the store's return (probe period plus compute). */
const RECOVERY_BOUND_MS = 5_000;

let redis: RedisHandle;
let s3: S3Handle;
let proxy: FaultProxy;
let client: Redis;

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis(), startS3()]);
  proxy = await startFaultProxy(s3.endpoint);
  client = new Redis(redis.url);
});

afterAll(async () => {
  proxy?.set({ kind: 'pass' });
  client?.disconnect();
  await proxy?.stop();
  await Promise.all([redis?.stop(), s3?.stop()]);
});

/** A stack behind the proxy; the reconciler's rounds off, so recovery must not wait for them. */
function stackBehindProxy(label: string, env: Record<string, string> = {}): Promise<Stack> {
  return startStack({
    redis,
    s3: { ...s3, endpoint: proxy.url },
    label,
    env: { RECONCILE_INTERVAL_MS: '0', ...env },
  });
}

/** The latest next-attempt time among the precompute jobs waiting out a backoff (0 when none). */
async function latestScheduledRetry(stack: Stack): Promise<number> {
  const key = `${keyPrefix(stack.config.queuePrefix)}:${PRECOMPUTE_QUEUE}:delayed`;
  const last = await client.zrange(key, -1, -1, 'WITHSCORES');
  // BullMQ scores a delayed job by its due time in ms times 4096 (plus a counter).
  return last.length === 2 ? Math.floor(Number(last[1]) / 0x1000) : 0;
}

const statusOf = async (stack: Stack, id: string) =>
  (await stack.request('GET', `/v1/documents/${id}`)).body.status as string;

/**
 * Acknowledge DOCUMENTS documents, let their jobs meet a store answering 500 for `outageMs`, check their
 * status then (`during`), and return how long after the store's return each became ready (ms, sorted).
 */
async function outage(stack: Stack, outageMs: number, during: string): Promise<number[]> {
  const worker = stack.precompute!.worker;
  await worker.pause();
  const ids = Array.from({ length: DOCUMENTS }, (_, i) => `doc-${i}`);
  for (const [i, id] of ids.entries()) {
    const text = STORY_SETS[i % STORY_SETS.length].chunks.map((c) => `Day ${i}. ${c}`).join('\n\n');
    const r = await stack.request('POST', '/v1/documents', { body: { id, text } });
    expect(r.status, r.text).toBe(202);
  }
  proxy.set({ kind: 'error500' });
  worker.resume(); // every attempt meets a store answering 500
  await new Promise((res) => setTimeout(res, outageMs));
  expect(await Promise.all(ids.map((id) => statusOf(stack, id)))).toEqual(ids.map(() => during));
  proxy.set({ kind: 'pass' });
  const back = Date.now();
  const latest = await latestScheduledRetry(stack);
  const scheduled = latest === 0 ? 'none' : `${latest - back} ms after the store's return`;

  const readyAfter = new Map<string, number>();
  while (readyAfter.size < ids.length && Date.now() - back < 30_000) {
    for (const id of ids) {
      if (readyAfter.has(id)) continue;
      if ((await statusOf(stack, id)) === 'ready') readyAfter.set(id, Date.now() - back);
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  const times = [...readyAfter.values()].sort((a, b) => a - b);
  console.log(
    `${stack.config.queuePrefix}: latest backoff retry scheduled: ${scheduled}; ` +
      `documents ready after ${times.join(', ')} ms`,
  );
  expect(readyAfter.size).toBe(ids.length);
  return times;
}

describe('recovery after a store outage', () => {
  it('precomputes every acknowledged document within seconds of the store answering again', async () => {
    const stack = await stackBehindProxy('store-recovery');
    try {
      const times = await outage(stack, OUTAGE_MS, 'pending');
      expect(Math.max(...times)).toBeLessThan(RECOVERY_BOUND_MS);
    } finally {
      await stack.close();
    }
  });

  it('retries chunks that failed for good during the outage as soon as the store answers', async () => {
    const stack = await stackBehindProxy('store-recovery-failed', { PRECOMPUTE_ATTEMPTS: '2' });
    try {
      // Two attempts fail within about 2 s; without the retry on recovery they would wait 60 s and a
      // reconciler round.
      const times = await outage(stack, 4_000, 'failed');
      expect(Math.max(...times)).toBeLessThan(RECOVERY_BOUND_MS);
    } finally {
      await stack.close();
    }
  });
});
