import { describe, expect, it } from 'vitest';
import { argmax } from '../../core/model/generate.js';
import type { Engine } from '../../core/model/engine.js';
import { maxAbsDiff, randomEngine, storiesEngine } from '../helpers/models.js';

/** KV-cached decoding must equal recomputing the whole sequence from scratch at every step. */
async function checkCachedEqualsScratch(engine: Engine, prompt: number[], steps: number) {
  const V = engine.config.vocabSize;
  const cache = engine.newCache(4);
  let logits = await engine.forward(cache, prompt);
  const seq = [...prompt];
  let worst = 0;
  for (let s = 0; s < steps; s++) {
    const scratch = await engine.promptLogits(seq);
    const last = scratch.subarray((seq.length - 1) * V);
    worst = Math.max(worst, maxAbsDiff(logits, last));
    expect(argmax(logits)).toBe(argmax(last));
    const next = argmax(logits);
    seq.push(next);
    logits = await engine.forward(cache, [next]);
  }
  return worst;
}

describe('KV-cached decoding', () => {
  it('equals recomputation from scratch on stories260K (1e-4)', async () => {
    const engine = await storiesEngine();
    const worst = await checkCachedEqualsScratch(engine, [1, 403, 407, 261, 378], 24);
    expect(worst).toBeLessThan(1e-4);
    await engine.dispose();
  });

  it('equals recomputation from scratch on a random GQA model, also across prefill blocks', async () => {
    const engine = await randomEngine({}, 7, { prefillBlock: 16 });
    const prompt = Array.from({ length: 40 }, (_, i) => (i * 37) % 300);
    const worst = await checkCachedEqualsScratch(engine, prompt, 12);
    expect(worst).toBeLessThan(1e-4);
    await engine.dispose();
  });
});
