import { describe, expect, it } from 'vitest';
import { CacheBlendError } from '../../core/errors.js';
import { InferenceThread } from '../../core/runtime/inference-thread.js';
import type { createHandlers } from '../helpers/thread-handlers.js';

type Handlers = Awaited<ReturnType<typeof createHandlers>>;
const shape = {
  hiddenSize: 256,
  intermediateSize: 768,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
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
      let busyMs = 0;
      for (let i = 0; i < 3; i++) busyMs += (await thread.call('prefill', [1024])).ms;
      clearInterval(timer);
      expect(busyMs).toBeGreaterThan(300); // the work was long enough to matter...
      expect(worstGap).toBeLessThan(150); // ...yet this thread never stalled for long
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
