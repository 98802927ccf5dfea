import { describe, expect, it } from 'vitest';
import { QA_SETS } from '../../core/eval/index.js';
import { generateQuestions } from '../../core/eval/qa-dev.js';

describe('generated development questions (core/eval/qa-dev.ts)', () => {
  it('are reproducible from their seed, and differ between seeds', () => {
    expect(generateQuestions('easy', 30, 7)).toEqual(generateQuestions('easy', 30, 7));
    expect(generateQuestions('easy', 30, 7)).not.toEqual(generateQuestions('easy', 30, 8));
  });

  for (const set of QA_SETS) {
    it(`${set}: the asked colour is stated once, where its type says`, () => {
      const qs = generateQuestions(set, 300, 3);
      const [lo, hi] = set === 'easy' ? [2, 3] : [4, 6];
      for (const q of qs) {
        expect(q.chunks.length).toBeGreaterThanOrEqual(lo);
        expect(q.chunks.length).toBeLessThanOrEqual(hi);
        for (const c of q.chunks) expect(c.endsWith(' . <sep>')).toBe(true);
        const o = /^<q> color of (O\d+) \? <a>$/.exec(q.question)![1];
        const text = q.chunks.join(' ');
        const statements = [
          ...text.matchAll(new RegExp(`\\b${o} is (\\w+)`, 'g')),
          ...text.matchAll(new RegExp(`bought ${o} \\.`, 'g')),
        ];
        expect(statements).toHaveLength(1);
        if (q.type === 'hop1_color') expect(text).toContain(`${o} is ${q.answer} .`);
        if (q.type === 'coref_intra') {
          const c = q.chunks.find((x) => x.includes(`bought ${o} .`))!;
          expect(c).toMatch(new RegExp(`bought ${o} \\. it is ${q.answer} \\.`));
        }
        if (q.type === 'coref_cross') {
          const i = q.chunks.findIndex((x) => x.endsWith(`bought ${o} . <sep>`));
          expect(i).toBeGreaterThanOrEqual(0);
          expect(q.chunks[i + 1].startsWith(`it is ${q.answer} .`)).toBe(true);
        }
      }
      expect(qs.filter((q) => q.type === 'coref_cross')).toHaveLength(100);
    });
  }
});
