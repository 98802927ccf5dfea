import { describe, expect, it } from 'vitest';
import { measureFidelity } from '../../core/blend/index.js';
import { measureKvDtypeFidelity } from '../../core/blend/kv-dtype-fidelity.js';
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

describe('int8 chunk caches on stories260K', () => {
  it("keep blend's first-token KL within 0.005 of fp16 caches' and reuse's too", async () => {
    const engine = await storiesEngine();
    const rows = await measureKvDtypeFidelity(engine, STORY_SETS, {
      dtypes: ['int8'],
      reference: 'float16',
      configs: [
        { name: 'reuse', o: { mode: 'reuse' } },
        { name: 'blend', o: { mode: 'blend', ratio: 0.15 } },
      ],
      agreementTokens: 16,
    });
    await engine.dispose();
    for (const config of ['reuse', 'blend']) {
      const fp16 = rows.find((r) => r.config === config && r.kvDtype === 'float16')!;
      const int8 = rows.find((r) => r.config === config && r.kvDtype === 'int8')!;
      // Measured (bench/results/fidelity-cpu.json, kvDtypes): differences below 0.001 nats.
      expect(Math.abs(int8.meanKlVsFull - fp16.meanKlVsFull)).toBeLessThan(0.005);
      expect(int8.meanKlVsReference).toBeLessThan(0.005);
      expect(int8.agreementVsReference).toBeGreaterThanOrEqual(0.9);
    }
  });
});
