import { describe, expect, it } from 'vitest';
import { controllerRatio, CostModel } from '../../core/blend/index.js';
import { argmax, sampleToken, seededRandom } from '../../core/model/generate.js';

const logits = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i * 1.7) * 3);

describe('sampling', () => {
  it('is greedy at temperature 0 and with top-k 1', () => {
    const rand = seededRandom(1);
    expect(sampleToken(logits, { maxTokens: 1 }, rand)).toBe(argmax(logits));
    expect(sampleToken(logits, { maxTokens: 1, temperature: 1.5, topK: 1 }, rand)).toBe(argmax(logits));
  });

  it('is reproducible for a seed and follows the distribution', () => {
    const draw = (seed: number) => {
      const rand = seededRandom(seed);
      return Array.from({ length: 200 }, () => sampleToken(logits, { maxTokens: 1, temperature: 1 }, rand));
    };
    expect(draw(3)).toEqual(draw(3));
    expect(draw(3)).not.toEqual(draw(4));
    const counts = new Map<number, number>();
    for (const t of draw(5)) counts.set(t, (counts.get(t) ?? 0) + 1);
    // The most likely token is drawn most often, and more than one token is drawn at temperature 1.
    const top = [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0];
    expect(logits[top]).toBeGreaterThan(2.5);
    expect(counts.size).toBeGreaterThan(1);
  });

  it('top-p keeps only the nucleus', () => {
    const peaked = new Float32Array(10).fill(-10);
    peaked[3] = 10;
    peaked[7] = 9;
    const rand = seededRandom(9);
    const seen = new Set(
      Array.from({ length: 100 }, () =>
        sampleToken(peaked, { maxTokens: 1, temperature: 1, topP: 0.5 }, rand),
      ),
    );
    expect([...seen]).toEqual([3]);
  });
});

describe('loading controller', () => {
  it('recomputes as many tokens as loading hides, never fewer than the minimum', () => {
    // Loading a layer takes 20 ms; a token-layer takes 0.01 ms; 1000 context tokens → r_load = 2 → capped at 1.
    expect(
      controllerRatio({ minRatio: 0.15, layerLoadMs: 20, tokenLayerMs: 0.01, contextTokens: 1000 }),
    ).toBe(1);
    // Fast store: r_load = 0.5 / (0.01 × 1000) = 0.05 < minimum.
    expect(
      controllerRatio({ minRatio: 0.15, layerLoadMs: 0.5, tokenLayerMs: 0.01, contextTokens: 1000 }),
    ).toBe(0.15);
    expect(
      controllerRatio({ minRatio: 0.15, layerLoadMs: 3, tokenLayerMs: 0.01, contextTokens: 1000 }),
    ).toBeCloseTo(0.3);
  });

  it('estimates its inputs from observed loads and layer runs', () => {
    const m = new CostModel(1);
    expect(m.estimate(1000)).toBeNull();
    m.observeLoad(10_000, 5); // 2000 bytes/ms
    m.observeLayer(100, 2); // 0.02 ms per token-layer
    expect(m.estimate(1000)).toEqual({ layerLoadMs: 0.5, tokenLayerMs: 0.02 });
  });
});
