import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import {
  CALIBRATION_SAMPLE,
  calibrate,
  calibrationKey,
  readCalibration,
  writeCalibration,
  type Calibration,
} from '../../core/eval/index.js';
import { createHandlers } from '../../core/inference/engine-handlers.js';
import { Engine } from '../../core/model/engine.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import type { BlendJobData } from '../../core/queue/contracts.js';
import { FileObjectStore } from '../../core/storage/file.js';
import { testEngineInit } from '../helpers/service.js';
import { STORIES_DIR, storiesEngine } from '../helpers/models.js';

const QWEN2_FIXTURE = fileURLToPath(new URL('../fixtures/hf/qwen2-bias', import.meta.url));

/** The built-in sample through deviation selection, as `cacheblend calibrate --selection deviation` runs it. */
function deviationCalibration(engine: Engine) {
  return calibrate(engine, {
    sample: CALIBRATION_SAMPLE,
    sampleName: 'built-in',
    blend: { mode: 'blend', selection: 'deviation' },
    kvDtype: 'float16',
  });
}

describe('calibration: blend against full on a sample', () => {
  let stories: Engine;
  beforeAll(async () => {
    stories = await storiesEngine();
  });
  afterAll(() => stories.dispose());

  it('passes stories260K with deviation selection and measures reuse for scale', async () => {
    const c = await deviationCalibration(stories);
    expect(c.flagged).toBe(false);
    expect(c.reasons).toEqual([]);
    expect(c.sample).toEqual({ name: 'built-in', sets: CALIBRATION_SAMPLE.length, tokens: 16 });
    expect(c.blendVsFull.meanKl).toBeGreaterThan(0);
    expect(c.blendVsFull.meanKl).toBeLessThan(c.reuseVsFull.meanKl);
    expect(c.blendVsFull.meanAgreement).toBeGreaterThan(c.thresholds.minMeanAgreement);
    expect(c.kvFingerprint).toBe(stories.kvFingerprint);
  });

  it('flags a model whose blended answers diverge from full (a random Qwen2 fixture)', async () => {
    const engine = await Engine.create(await loadHfModel(QWEN2_FIXTURE), { threads: 1 });
    try {
      const c = await deviationCalibration(engine);
      expect(c.flagged).toBe(true);
      expect(c.reasons.join()).toMatch(/greedy agreement/);
    } finally {
      await engine.dispose();
    }
  });
});

describe('the calibration gate in the service', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-calibration-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('`cacheblend calibrate` stores the result beside the cache keys; exit 3 flags the model', async () => {
    process.env.KV_STORE_URL = `file://${dir}`;
    let out = '';
    try {
      // The fixture has two layers: a question-aware blend (the default) keeps the check layer's fresh
      // rows, so checking at layer 1 leaves nothing reused and it passes; deviation's blend is far off.
      expect(await main(['calibrate', '--model', QWEN2_FIXTURE, '--no-store'], () => undefined)).toBe(0);
      const args = ['calibrate', '--model', QWEN2_FIXTURE, '--selection', 'deviation', '--json'];
      const code = await main(args, (s) => (out += s));
      expect(code).toBe(3);
      const r = JSON.parse(out) as Calibration & { stored: string };
      expect(r.stored).toBe(calibrationKey(r.kvFingerprint));
      const back = await readCalibration(new FileObjectStore(dir), r.kvFingerprint);
      expect(back?.flagged).toBe(true);
      expect(await main(['calibrate', '--model', QWEN2_FIXTURE, '--sample', '/nonexistent.json'])).toBe(2);
    } finally {
      delete process.env.KV_STORE_URL;
    }
  });

  it('serves a flagged model in full mode with CALIBRATION_GATE=full, and only then', async () => {
    const store = new FileObjectStore(dir);
    const stories = await storiesEngine();
    const fingerprint = stories.kvFingerprint;
    const measured = await calibrate(stories, {
      sample: CALIBRATION_SAMPLE.slice(0, 1),
      sampleName: 'test',
      blend: { mode: 'blend' },
      kvDtype: 'float16',
    });
    await stories.dispose();
    // The verdict as a flagged model would have it; the measurement itself is stories260K's.
    await writeCalibration(store, { ...measured, flagged: true, reasons: ['set by the test'] });
    const job: BlendJobData = {
      question: 'Lily said',
      chunks: [],
      chunkTexts: ['Once upon a time, there was a girl.', 'She had a red ball.'],
      documents: [],
      fingerprint,
      mode: 'blend',
      maxTokens: 2,
      temperature: 0,
      seed: 0,
      stream: false,
    };
    for (const calibrationGate of ['full', 'report'] as const) {
      const h = await createHandlers(
        testEngineInit({ model: STORIES_DIR, kvStoreUrl: `file://${dir}`, calibrationGate }),
      );
      try {
        const r = await h.blend(job);
        if (calibrationGate === 'full') {
          expect(r).toMatchObject({ mode: 'full', gatedToFull: true });
          expect(r.recomputedTokens).toBe(r.contextTokens);
        } else {
          expect(r.mode).toBe('blend');
          expect(r.gatedToFull).toBeUndefined();
          expect(r.recomputedTokens).toBeLessThan(r.contextTokens);
        }
      } finally {
        await h.close();
      }
    }
  });
});
