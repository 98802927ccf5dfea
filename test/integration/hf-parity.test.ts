/**
 * Engine parity with Hugging Face transformers: every fixture in test/fixtures/hf is loaded with
 * loadHfModel, run through the engine (CPU provider), and its logits at every position compared with those
 * transformers computed (see test/fixtures/hf/README.md).
 *
 * - fp32 references (weights upcast to float32, CPU, eager attention): max |diff| <= 1e-4.
 * - half-precision checkpoints also carry logits computed natively in float16 / bfloat16 on a GPU. The engine
 *   computes in fp32, so it can be no closer to those than transformers' own fp32 run is; the test asserts it
 *   is within that distance (plus 1e-3) and prints what was reached.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../core/model/engine.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import { HF_FIXTURE_NAMES, maxAbsDiff, readHfFixture } from '../helpers/hf-fixtures.js';

const FP32_TOLERANCE = 1e-4;
const reached: string[] = [];

afterAll(() => {
  console.log(`HF parity (max |engine - transformers| over all positions):\n${reached.join('\n')}`);
});

describe.each(HF_FIXTURE_NAMES)('engine vs transformers: %s', (name) => {
  const fx = readHfFixture(name);

  it('matches the logits at every position of every prompt', async () => {
    const model = await loadHfModel(fx.dir);
    const engine = await Engine.create(model, { executionProvider: 'cpu', threads: 1 });
    try {
      let fp32 = 0;
      let native = 0;
      for (const [i, ids] of fx.ref.prompts.entries()) {
        const logits = await engine.promptLogits(ids);
        expect(logits.length).toBe(ids.length * model.config.vocabSize);
        fp32 = Math.max(fp32, maxAbsDiff(logits, fx.fp32[i]));
        if (fx.native) native = Math.max(native, maxAbsDiff(logits, fx.native[i]));
      }
      let line = `  ${name.padEnd(12)} fp32 ${fp32.toExponential(2)}`;
      if (fx.ref.logits_native) {
        const hf = fx.ref.logits_native.max_abs_diff_vs_fp32;
        line += `  native ${fx.ref.logits_native.computed_in} ${native.toExponential(2)} (transformers fp32 vs native: ${hf.toExponential(2)})`;
      }
      reached.push(line);
      expect(fp32).toBeLessThanOrEqual(FP32_TOLERANCE);
      if (fx.ref.logits_native) {
        expect(native).toBeLessThanOrEqual(fx.ref.logits_native.max_abs_diff_vs_fp32 + 1e-3);
      }
    } finally {
      await engine.dispose();
    }
  });
});
