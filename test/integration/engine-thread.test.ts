import { describe, expect, it } from 'vitest';
import { testEngineInit } from '../helpers/service.js';
import { SupervisedEngineThread, type EngineThread } from '../../core/inference/engine-thread.js';

describe('SupervisedEngineThread', () => {
  it('starts a new inference thread when the old one dies', async () => {
    const restarts: string[] = [];
    const thread = await SupervisedEngineThread.start(testEngineInit(), (reason) => restarts.push(reason));
    try {
      const { fingerprint } = await thread.call('info', []);
      // Kill the worker thread behind the supervisor's back, as a crash would.
      const inner = (await (thread as unknown as { current: Promise<EngineThread> }).current) as unknown as {
        worker: { terminate(): Promise<number> };
      };
      await inner.worker.terminate();
      await expect(thread.call('info', [])).rejects.toThrow(/inference thread exited/);
      expect(restarts).toHaveLength(1);
      expect((await thread.call('info', [])).fingerprint).toBe(fingerprint);
      const obj = await thread.call('computeChunk', [[1, 2, 3]]);
      expect(obj.byteLength).toBeGreaterThan(0);
    } finally {
      await thread.terminate();
    }
  });
});
