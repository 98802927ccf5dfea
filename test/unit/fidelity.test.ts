import { describe, expect, it } from 'vitest';
import { measureFidelity } from '../../core/blend/index.js';
import { storiesEngine, STORY_SETS } from '../helpers/models.js';

describe('blend fidelity on stories260K', () => {
  it('blend at r=0.15 has a clearly lower first-token KL from full than reuse', async () => {
    const engine = await storiesEngine();
    const rows = await measureFidelity(engine, STORY_SETS, {
      ratios: [0.15],
      metrics: ['k'],
      agreementTokens: 16,
    });
    const reuse = rows.find((r) => r.mode === 'reuse')!;
    const blend = rows.find((r) => r.mode === 'blend')!;
    // Measured: see bench/results/fidelity.json. Blend must remove at least a third of reuse's divergence.
    expect(blend.meanKl).toBeLessThan(0.67 * reuse.meanKl);
    expect(blend.meanAgreement).toBeGreaterThanOrEqual(reuse.meanAgreement);
    await engine.dispose();
  });
});
