import { describe, expect, it } from 'vitest';
import { CacheBlendError } from '../../core/errors.js';
import { InferenceThread } from '../../core/runtime/inference-thread.js';
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
});
