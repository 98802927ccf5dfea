import { describe, expect, it } from 'vitest';
import { SupervisedEngineThread, type EngineThread } from '../../core/inference/engine-thread.js';
import { STORIES_DIR } from '../helpers/models.js';

describe('SupervisedEngineThread', () => {
  it('starts a new inference thread when the old one dies', async () => {
    const restarts: string[] = [];
    const thread = await SupervisedEngineThread.start(
      {
        model: STORIES_DIR,
        modelSource: {
          searchPath: [],
          cacheDir: '/nonexistent',
          allowDownload: false,
          endpoint: 'https://huggingface.co',
        },
        executionProvider: 'cpu',
        threads: 1,
        kvStoreUrl: 'memory://',
        s3: { region: 'us-east-1', forcePathStyle: true },
        diskCacheDir: null,
        diskCacheBytes: 1 << 30,
        lruBytes: 0,
        kvDtype: 'float16',
        logLevel: 'silent',
      },
      (reason) => restarts.push(reason),
    );
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
