import { describe, expect, it } from 'vitest';
import { argmax } from '../../core/model/generate.js';
import { buildMask, type Engine } from '../../core/model/engine.js';
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

describe('K/V projection graph', () => {
  it('returns the same K/V rows as the full layer graph', async () => {
    for (const engine of [await storiesEngine(), await randomEngine({ numLayers: 2 })]) {
      const T = 9;
      const hidden = engine.embed(Array.from({ length: T }, (_, i) => 5 + i));
      const positions = Int32Array.from({ length: T }, (_, i) => 3 + i);
      const rope = engine.rope(positions);
      const { numKvHeads: KV, headDim: hd } = engine.config;
      const empty = new Float32Array(0);
      const layer = await engine.runLayer(
        1,
        hidden,
        rope,
        empty,
        empty,
        buildMask(positions, new Int32Array(0)),
      );
      const proj = await engine.projectKv(1, hidden, rope);
      expect(proj.k.length).toBe(T * KV * hd);
      expect(maxAbsDiff(proj.k, layer.k)).toBeLessThan(1e-6);
      expect(maxAbsDiff(proj.v, layer.v)).toBeLessThan(1e-6);
      await engine.dispose();
    }
  });
});
