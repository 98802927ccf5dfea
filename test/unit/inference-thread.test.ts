import { describe, expect, it } from 'vitest';
import { toHttpError } from '../../api/errors.js';
import { CacheBlendError, TooLargeError } from '../../core/errors.js';
import { InferenceThread, ThreadDiedError } from '../../core/runtime/inference-thread.js';
import type { createHandlers } from '../helpers/thread-handlers.js';

type Handlers = Awaited<ReturnType<typeof createHandlers>>;
const shape = {
  hiddenSize: 512,
  intermediateSize: 1536,
  numLayers: 4,
  numHeads: 8,
  numKvHeads: 4,
  vocabSize: 1000,
};

describe('InferenceThread', () => {
  it('keeps the event loop responsive while a long inference runs', async () => {
    const thread = await InferenceThread.start<Handlers>(
      new URL('../helpers/thread-handlers.ts', import.meta.url),
      {
        shape,
      },
    );
    try {
      // Timer ticks every 10 ms on this thread; record the longest gap while the thread computes.
      let last = performance.now();
      let worstGap = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        worstGap = Math.max(worstGap, now - last);
        last = now;
      }, 10);
      let shortestCallMs = Infinity;
      for (let i = 0; i < 3; i++) {
        shortestCallMs = Math.min(shortestCallMs, (await thread.call('prefill', [2048])).ms);
      }
      clearInterval(timer);
      // Had inference run on this thread, one tick would have waited a whole call; it never waited even
      // half of the shortest one (slack for a busy 2-core CI machine).
      expect(shortestCallMs).toBeGreaterThan(400);
      expect(worstGap).toBeLessThan(shortestCallMs / 2);
    } finally {
      await thread.terminate();
    }
  });

  it('carries error codes across the thread boundary', async () => {
    const thread = await InferenceThread.start<Handlers>(
      new URL('../helpers/thread-handlers.ts', import.meta.url),
      {
        shape,
      },
    );
    try {
      const err = await thread.call('reject', []).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CacheBlendError);
      expect((err as CacheBlendError).code).toBe('INVALID_ARGUMENT');
      expect((err as Error).message).toBe('bad request from the test');
    } finally {
      await thread.terminate();
    }
  });

  it('carries the field at fault with its code across the thread boundary, as properties', async () => {
    const thread = await InferenceThread.start<Handlers>(
      new URL('../helpers/thread-handlers.ts', import.meta.url),
      { shape },
    );
    try {
      const err = await thread.call('rejectField', []).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TooLargeError);
      expect(err).toMatchObject({
        code: 'PAYLOAD_TOO_LARGE',
        field: 'chunks.3',
        message: 'chunks.3: is over the budget',
      });
      // The API answers from the properties: 413 naming the field.
      expect(toHttpError(err)).toMatchObject({
        status: 413,
        code: 'PAYLOAD_TOO_LARGE',
        extra: { field: 'chunks.3' },
      });
    } finally {
      await thread.terminate();
    }
  });

  it('fails every call on a thread that exited with ThreadDiedError (its threadDied property)', async () => {
    const thread = await InferenceThread.start<Handlers>(
      new URL('../helpers/thread-handlers.ts', import.meta.url),
      { shape },
    );
    try {
      const died = await thread.call('exit', []).catch((e: unknown) => e);
      expect(died).toBeInstanceOf(ThreadDiedError);
      expect(died).toMatchObject({ code: 'UNAVAILABLE', threadDied: true });
      const after = await thread.call('reject', []).catch((e: unknown) => e);
      expect(after).toBe(died);
      // An error from a live thread is not a death, whatever its message says.
      expect(new CacheBlendError('UNAVAILABLE', 'inference thread exited (code 1)')).not.toHaveProperty(
        'threadDied',
      );
    } finally {
      await thread.terminate();
    }
  });
});
