import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blendPrefill,
  klDivergence,
  memorySource,
  precomputeChunk,
  type BlendOptions,
} from '../../core/blend/index.js';
import { generateStorySets, STORY_DEV_SHAPE } from '../../core/eval/stories-dev.js';
import type { Engine } from '../../core/model/engine.js';
import { storiesEngine } from '../helpers/models.js';

describe('generated stories260K development sets', () => {
  it('are reproducible from a seed, with the shape asked for and 2–4 word prompts', () => {
    const a = generateStorySets(30, 7);
    expect(generateStorySets(30, 7)).toEqual(a);
    expect(generateStorySets(30, 8)).not.toEqual(a);
    for (const s of a) {
      expect(s.chunks.length).toBeGreaterThanOrEqual(STORY_DEV_SHAPE.chunks[0]);
      expect(s.chunks.length).toBeLessThanOrEqual(STORY_DEV_SHAPE.chunks[1]);
      expect(s.question.split(' ').length).toBeGreaterThanOrEqual(2);
      expect(s.question.split(' ').length).toBeLessThanOrEqual(4);
    }
    expect(generateStorySets(5, 1, { chunks: [8, 8] }).every((s) => s.chunks.length === 8)).toBe(true);
  });
});

/**
 * The default blend against reuse, first-token KL from full prefill, on generated sets: the stored rows'
 * shared bias (core/blend/stale-shift.ts) is what lets a question-aware selection land further from full
 * than reuse.
 */
describe('blend with the stored rows shifted (stories260K)', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await storiesEngine();
  });
  afterAll(() => engine.dispose());

  async function kls(set: { chunks: string[]; question: string }, blends: BlendOptions[]) {
    const tok = engine.model.tokenizer;
    const sources = await Promise.all(
      set.chunks.map(async (c) => memorySource(await precomputeChunk(engine, tok.encode(c)))),
    );
    const q = tok.encode(set.question);
    const logits = async (o: BlendOptions) =>
      (await blendPrefill(engine, sources, q, o)).prefill.firstTokenLogits;
    const full = await logits({ mode: 'full' });
    const out: number[] = [];
    for (const o of [{ mode: 'reuse' } as BlendOptions, ...blends])
      out.push(klDivergence(full, await logits(o)));
    return out;
  }

  it('keeps the default below reuse where the rows as stored land far above it', async () => {
    // Eight one-sentence chunks, a three-word prompt: the answer's source row is among the selected ones.
    const set = generateStorySets(99, 3, { chunks: [3, 8] })[98];
    const [reuse, shifted, kept] = await kls(set, [
      { mode: 'blend', ratio: 0.15 },
      { mode: 'blend', ratio: 0.15, shiftStored: false },
    ]);
    expect(kept).toBeGreaterThan(2 * reuse);
    expect(shifted).toBeLessThan(reuse);
  });

  it('keeps the default below reuse on every one of 40 generated sets, at under half its mean', async () => {
    let sumReuse = 0;
    let sumBlend = 0;
    for (const set of generateStorySets(40, 1)) {
      const [reuse, blend] = await kls(set, [{ mode: 'blend', ratio: 0.15 }]);
      expect(blend).toBeLessThan(reuse);
      sumReuse += reuse;
      sumBlend += blend;
    }
    expect(sumBlend).toBeLessThan(sumReuse / 2);
  });
});
