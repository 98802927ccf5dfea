import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../core/model/engine.js';
import {
  loadQuestions,
  measureAccuracy,
  prepareQuestions,
  type PreparedQuestion,
} from '../../core/eval/index.js';
import { CBQA_DIR, cbqaEngine } from '../helpers/models.js';

/**
 * Answer accuracy as a regression test, so a defect in the blending path shows as lost answers and not
 * only as a larger KL. The fixed subset: all 100 `coref_cross` questions of questions.json's public_easy
 * set (the answer is reachable only through `P bought O .` | `<sep>` | `it is COLOUR .` across a chunk
 * boundary: the case CacheBlend exists for). Caches go through the stored fp16 round trip, as in the
 * service; the answer is the greedy first token.
 *
 * Measured on this subset (npm run bench:accuracy, 2-core CPU, identical on every run): full 1.00, reuse
 * 0.94, blend (K deviation, check layer 1, r = 0.15) 1.00 — a margin of 0.06 (6 questions) over reuse. The
 * test asks for 0.05: one question of slack for floating-point differences between machines. The default
 * selection (`combined` with the lookahead) answers 1.00 here.
 */
describe('answer accuracy on cbqa-3M, easy coref_cross questions', () => {
  let engine: Engine;
  let prepared: PreparedQuestion[];
  beforeAll(async () => {
    engine = await cbqaEngine();
    const subset = loadQuestions(CBQA_DIR).easy.filter((q) => q.type === 'coref_cross');
    expect(subset).toHaveLength(100);
    prepared = await prepareQuestions(engine, subset);
  });
  afterAll(() => engine.dispose());

  it('full ≥ 0.98, reuse ≥ 0.90, blend(0.15) ≥ reuse + 0.05', async () => {
    const full = await measureAccuracy(engine, prepared, { mode: 'full' });
    const reuse = await measureAccuracy(engine, prepared, { mode: 'reuse' });
    const blend = await measureAccuracy(engine, prepared, {
      mode: 'blend',
      ratio: 0.15,
      selection: 'deviation',
    });
    const byDefault = await measureAccuracy(engine, prepared, { mode: 'blend', ratio: 0.15 });
    expect(full.accuracy).toBeGreaterThanOrEqual(0.98);
    expect(reuse.accuracy).toBeGreaterThanOrEqual(0.9); // measured 0.94: reuse's own path works
    expect(blend.accuracy).toBeGreaterThanOrEqual(reuse.accuracy + 0.05);
    expect(byDefault.accuracy).toBeGreaterThanOrEqual(reuse.accuracy + 0.05); // measured 1.00
  });
});

/**
 * The default selection's gain where K deviation loses answers: the 100 `hop1_color` questions of
 * public_easy (`O is COLOUR .` in some chunk). Measured: reuse 0.82, K deviation (r = 0.15) 0.83, the
 * default (`combined` with the lookahead) 0.97 — it recomputes the colour row that deviation never ranks
 * (`combined` with the check layer's attention, an earlier default, 0.89). The test asks the default for
 * deviation + 0.10 (four questions of slack).
 */
describe('answer accuracy on cbqa-3M, easy hop1_color questions', () => {
  let engine: Engine;
  let prepared: PreparedQuestion[];
  beforeAll(async () => {
    engine = await cbqaEngine();
    prepared = await prepareQuestions(
      engine,
      loadQuestions(CBQA_DIR).easy.filter((q) => q.type === 'hop1_color'),
    );
  });
  afterAll(() => engine.dispose());

  it('the default selection ≥ K deviation + 0.10 at r = 0.15', async () => {
    const deviation = await measureAccuracy(engine, prepared, {
      mode: 'blend',
      ratio: 0.15,
      selection: 'deviation',
    });
    const byDefault = await measureAccuracy(engine, prepared, { mode: 'blend', ratio: 0.15 });
    expect(byDefault.accuracy).toBeGreaterThanOrEqual(deviation.accuracy + 0.1);
  });
});
