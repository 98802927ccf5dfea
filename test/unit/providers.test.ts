import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../core/errors.js';
import { Engine } from '../../core/model/engine.js';
import { createRandomModel } from '../../core/model/random.js';
import { SMALL_SHAPE } from '../helpers/models.js';

// onnxruntime-node's CUDA binaries are fetched only on request (ONNXRUNTIME_NODE_INSTALL=cuda12).
const ortDir = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
const cudaInstalled = existsSync(
  path.join(ortDir, 'bin/napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'),
);

describe('execution providers', () => {
  it.skipIf(cudaInstalled)(
    'a missing CUDA provider fails with what to install (skipped where the CUDA binaries are installed)',
    async () => {
      const err = await Engine.create(createRandomModel(SMALL_SHAPE), { executionProvider: 'cuda' }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as UnavailableError).code).toBe('UNAVAILABLE');
      expect((err as Error).message).toMatch(/CUDA 12 and cuDNN 9/);
      expect((err as Error).message).toContain(
        'ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node --ignore-scripts=false',
      );
      // Refused before onnxruntime tries the library: no red "[E:onnxruntime…] Failed to load" line.
      expect((err as Error).message).toMatch(/libonnxruntime_providers_shared\.so.*not installed/);
    },
  );
});
