/**
 * StoreRecovery on a real Redis and BullMQ queue, with an in-memory store whose writes fail on demand
 * (the injected fault): a job noted while the store fails waits out its backoff until a probe write
 * succeeds, then runs at once; a job gone meanwhile (failed for good) asks for the failed chunks' retry;
 * and a store that fails again soon after answering is probed half as often.
 */
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '../../core/errors.js';
import { silentLogger } from '../../core/ops/log.js';
import { MemoryObjectStore } from '../../core/storage/memory.js';
import { StoreRecovery } from '../../precompute/store-recovery.js';
import { waitFor } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';

const PROBE_MS = 100;

/** A memory store whose puts fail while `down` (and count the attempts). */
class FailingStore extends MemoryObjectStore {
  down = true;
  puts = 0;
  override put(key: string, data: Buffer): Promise<void> {
    this.puts++;
    if (this.down) return Promise.reject(new UnavailableError('store down (injected)'));
    return super.put(key, data);
  }
}

let redis: RedisHandle;
let queue: Queue;

beforeAll(async () => {
  redis = await startRedis();
  const { port } = new URL(redis.url);
  queue = new Queue('store-recovery', { connection: { host: '127.0.0.1', port: Number(port) } });
});

afterAll(async () => {
  await queue?.close();
  await redis?.stop();
});

/** A job waiting out a one-minute backoff. */
const delayedJob = (name: string) => queue.add(name, {}, { delay: 60_000 });

describe('StoreRecovery', () => {
  it('promotes noted jobs once a probe write succeeds, and only then', async () => {
    const store = new FailingStore();
    let retried = 0;
    const recovery = new StoreRecovery(store, queue, silentLogger, async () => retried++, PROBE_MS);
    try {
      const job = await delayedJob('a');
      recovery.storeFailed(job.id!);
      await waitFor(async () => store.puts >= 3, 5_000, 'three failed probes');
      expect(await job.getState()).toBe('delayed');
      store.down = false;
      await waitFor(async () => (await job.getState()) === 'waiting', 5_000, 'job promoted');
      expect(retried).toBe(0); // the job was there to promote: nothing failed for good
      const left: string[] = [];
      for await (const key of store.list('health/')) left.push(key);
      expect(left).toEqual([]); // the probe deletes what it wrote
    } finally {
      await recovery.close();
    }
  });

  it('asks for the failed chunks to be retried when a noted job is gone', async () => {
    const store = new FailingStore();
    let retried = 0;
    const recovery = new StoreRecovery(store, queue, silentLogger, async () => retried++, PROBE_MS);
    try {
      recovery.storeFailed('no-such-job');
      store.down = false;
      await waitFor(async () => retried === 1, 5_000, 'retry of failed chunks');
    } finally {
      await recovery.close();
    }
  });

  it('probes a store that fails again soon after answering half as often', async () => {
    const store = new FailingStore();
    store.down = false;
    const recovery = new StoreRecovery(store, queue, silentLogger, async () => undefined, PROBE_MS);
    try {
      const waits: number[] = [];
      for (const name of ['f1', 'f2', 'f3']) {
        const job = await delayedJob(name);
        const t0 = Date.now();
        recovery.storeFailed(job.id!);
        await waitFor(async () => (await job.getState()) === 'waiting', 5_000, `${name} promoted`);
        waits.push(Date.now() - t0);
      }
      // 100, 200, 400 ms probe periods (plus the promotion).
      expect(waits[0]).toBeLessThan(2 * PROBE_MS);
      expect(waits[1]).toBeGreaterThanOrEqual(2 * PROBE_MS);
      expect(waits[2]).toBeGreaterThanOrEqual(4 * PROBE_MS);
    } finally {
      await recovery.close();
    }
  });
});
