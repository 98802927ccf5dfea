import { describe, expect, it } from 'vitest';
import { inverseFrequencies, rotateKeys } from '../../core/kv/rope.js';
import { Engine } from '../../core/model/engine.js';
import { createRandomModel } from '../../core/model/random.js';
import type { ModelConfig } from '../../core/model/types.js';
import { SMALL_SHAPE } from '../helpers/models.js';

function relError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

const variants: { name: string; patch: Partial<ModelConfig> }[] = [
  { name: 'adjacent pairs (llama2.c)', patch: { ropeLayout: 'interleaved' } },
  { name: 'split halves (Hugging Face)', patch: { ropeLayout: 'half' } },
  {
    name: 'split halves with llama3 scaling',
    patch: {
      ropeLayout: 'half',
      ropeTheta: 500000,
      ropeScaling: {
        type: 'llama3',
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 64,
      },
    },
  },
];

describe('RoPE re-encoding of cached keys', () => {
  for (const { name, patch } of variants) {
    it(`keys computed at p and rotated by δ equal keys computed at p+δ: ${name}`, async () => {
      const model = createRandomModel({ ...SMALL_SHAPE, numLayers: 2 }, 3);
      model.config = { ...model.config, ...patch };
      const engine = await Engine.create(model, { threads: 1 });
      const T = 24;
      const hidden = engine.embed(Array.from({ length: T }, (_, i) => (i * 11) % 300));
      const p = Int32Array.from({ length: T }, (_, i) => 1 + i);
      for (const delta of [5, 137, 1000, -1]) {
        for (const layer of [0, 1]) {
          const at = await engine.projectKv(layer, hidden, engine.rope(p));
          const target = await engine.projectKv(layer, hidden, engine.rope(p.map((x) => x + delta)));
          const moved = at.k.slice();
          const { numKvHeads, headDim, ropeLayout } = engine.config;
          rotateKeys(moved, T, numKvHeads, headDim, ropeLayout, engine.invFreq, delta);
          expect(relError(moved, target.k)).toBeLessThanOrEqual(1e-5);
          // Values carry no position: identical whatever the offset.
          expect(at.v).toEqual(target.v);
        }
      }
      await engine.dispose();
    });
  }

  it('llama3 scaling divides low frequencies by the factor and keeps high ones', () => {
    const base = { headDim: 64, ropeTheta: 500000 };
    const plain = inverseFrequencies({ ...base, ropeScaling: null });
    const scaled = inverseFrequencies({
      ...base,
      ropeScaling: {
        type: 'llama3',
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 8192,
      },
    });
    expect(scaled[0]).toBeCloseTo(plain[0], 12); // wavelength 2π < 8192/4: unchanged
    expect(scaled[31]).toBeCloseTo(plain[31] / 8, 15); // longest wavelength: divided by 8
    const mid = scaled.findIndex((f, i) => f !== plain[i] && Math.abs(f - plain[i] / 8) > 1e-18);
    expect(mid).toBeGreaterThan(0); // some band is smoothly interpolated
  });
});
