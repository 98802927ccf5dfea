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
  chooseSelection,
  quantile,
  readCalibration,
  SELECTION_CANDIDATES,
  servedSelection,
  writeCalibration,
  type CandidateScore,
  type Calibration,
} from '../../core/eval/index.js';
import { createHandlers } from '../../core/inference/engine-handlers.js';
import { Engine } from '../../core/model/engine.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import type { BlendJobData } from '../../core/queue/contracts.js';
import { FileObjectStore } from '../../core/storage/file.js';
import { testEngineInit } from '../helpers/service.js';
import { plannedPrompt, STORIES_DIR, storiesEngine } from '../helpers/models.js';

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

describe('calibration: the rule that chooses a selection', () => {
  const score = (name: string, p90Kl: number, meanKl: number, meanAgreement: number): CandidateScore => ({
    name,
    selection: 'deviation',
    attention: null,
    p90Kl,
    meanKl,
    maxKl: p90Kl,
    meanAgreement,
    worseThanReuse: 0,
  });

  it('takes the lowest 90th-percentile KL among those whose agreement beats reuse, not the lowest mean', () => {
    const a = score('a', 0.05, 0.004, 0.8); // the lowest mean, but a bad tail
    const b = score('b', 0.02, 0.01, 0.7);
    const c = score('c', 0.01, 0.009, 0.5); // the lowest tail, but agrees less than reuse
    expect(chooseSelection([a, b, c], 0.6).name).toBe('b');
    // None beats reuse: the lowest tail of all. Ties on the tail: the lower mean.
    expect(chooseSelection([a, b, c], 0.9).name).toBe('c');
    expect(chooseSelection([score('x', 0.02, 0.02, 1), score('y', 0.02, 0.01, 1)], 0).name).toBe('y');
  });

  it('interpolates the 90th percentile between order statistics', () => {
    expect(quantile([5, 1, 3, 2, 4, 6, 7, 8, 9, 10], 0.9)).toBeCloseTo(9.1, 12);
    expect(quantile([3], 0.9)).toBe(3);
  });

  it('serves the calibrated choice, else the default, on every backend (the device runs them all)', () => {
    const c = { choice: { strategy: 'question', attention: 'lookahead' } } as Calibration;
    expect(servedSelection(c)).toEqual({ strategy: 'question', attention: 'lookahead', from: 'calibration' });
    expect(servedSelection(null)).toEqual({ strategy: 'combined', attention: 'lookahead', from: 'default' });
    // One selection for every backend: nothing about the engine goes in.
    expect(servedSelection).toHaveLength(1);
  });
});

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

  it('compares every candidate selection and keeps the one the rule picks', async () => {
    const c = await calibrate(stories, {
      sample: CALIBRATION_SAMPLE.slice(0, 3),
      sampleName: 'built-in, 3',
      blend: { mode: 'blend' },
      kvDtype: 'float16',
    });
    expect(c.choice.candidates.map((x) => x.name)).toEqual([
      'deviation',
      'question lookahead',
      'combined lookahead',
      'combined',
      'fused',
    ]);
    expect(c.choice.candidates).toHaveLength(SELECTION_CANDIDATES.length);
    const chosen = chooseSelection(c.choice.candidates, c.reuseVsFull.meanAgreement);
    expect(c.blend.selection).toBe(chosen.name);
    expect(c.choice).toMatchObject({ strategy: chosen.selection, attention: chosen.attention });
    expect(c.blendVsFull.p90Kl).toBeCloseTo(chosen.p90Kl, 12);
    expect(c.blendVsFull.meanKl).toBeCloseTo(chosen.meanKl, 12);
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

  it("blends a job that names no selection with the calibration's choice for that model", async () => {
    const store = new FileObjectStore(dir);
    const stories = await storiesEngine();
    const measured = await calibrate(stories, {
      sample: CALIBRATION_SAMPLE.slice(0, 1),
      sampleName: 'test',
      blend: { mode: 'blend' },
      kvDtype: 'float16',
    });
    const fingerprint = stories.kvFingerprint;
    const tokenizer = stories.model.tokenizer;
    await stories.dispose();
    const job: BlendJobData = {
      question: 'Lily said',
      prompt: plannedPrompt(tokenizer, fingerprint, {
        question: 'Lily said',
        chunkTexts: ['Once upon a time, there was a girl named Lily.', 'She had a red ball and a big dog.'],
      }),
      documents: [],
      fingerprint,
      mode: 'blend',
      ratio: 0.15,
      maxTokens: 1,
      temperature: 0,
      seed: 0,
      stream: false,
      explain: true,
    };
    const recomputed = async (named?: BlendJobData['selection']) => {
      const h = await createHandlers(testEngineInit({ model: STORIES_DIR, kvStoreUrl: `file://${dir}` }));
      try {
        return (await h.blend({ ...job, ...(named && { selection: named }) })).explain!.recomputed;
      } finally {
        await h.close();
      }
    };
    const rows = new Map<string, number[]>();
    for (const strategy of ['deviation', 'question'] as const) {
      const attention = strategy === 'question' ? ('check' as const) : null;
      const choice = { ...measured.choice, strategy, attention };
      await writeCalibration(store, { ...measured, choice });
      rows.set(strategy, await recomputed());
      // The same rows as a job that names that selection; a named selection wins over the choice.
      expect(await recomputed({ strategy, ...(attention && { attention }) })).toEqual(rows.get(strategy));
    }
    expect(rows.get('deviation')).not.toEqual(rows.get('question'));
    expect(await recomputed({ strategy: 'deviation' })).toEqual(rows.get('deviation'));
    await store.delete(calibrationKey(fingerprint));
  });

  it('serves a flagged model in full mode with CALIBRATION_GATE=full, and only then', async () => {
    const store = new FileObjectStore(dir);
    const stories = await storiesEngine();
    const fingerprint = stories.kvFingerprint;
    const tokenizer = stories.model.tokenizer;
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
      prompt: plannedPrompt(tokenizer, fingerprint, {
        question: 'Lily said',
        chunkTexts: ['Once upon a time, there was a girl.', 'She had a red ball.'],
      }),
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
