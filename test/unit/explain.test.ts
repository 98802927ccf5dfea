/**
 * `explain`: each context token's text (the pieces of a chunk read back as the chunk's decoded text, on
 * both tokenizer kinds in models/), and which context tokens a mode recomputed, against the prefill itself.
 */
import { describe, expect, it } from 'vitest';
import { blendPrefill, memorySource, precomputeChunk } from '../../core/blend/index.js';
import { recomputedContext, tokenPieces } from '../../core/inference/explain.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import { loadLlama2cModel } from '../../core/model/loaders/llama2c.js';
import { CBQA_DIR, STORIES_DIR, STORY_SETS, storiesEngine } from '../helpers/models.js';

const TEXTS = [STORY_SETS[0].chunks[0], ' Ünïcödé — “quotes” and 数字 too', 'a  b\n\nc'];

describe('tokenPieces', () => {
  for (const [name, load] of [
    ['llama2.c (stories260K)', () => loadLlama2cModel(STORIES_DIR)],
    ['Hugging Face (cbqa-3M)', () => loadHfModel(CBQA_DIR)],
  ] as const) {
    it(`concatenates to the decoded chunk: ${name}`, async () => {
      const { tokenizer } = await load();
      for (const text of TEXTS) {
        const ids = tokenizer.encode(text);
        const pieces = tokenPieces(tokenizer, ids);
        expect(pieces).toHaveLength(ids.length);
        expect(pieces.join('')).toBe(tokenizer.decode(ids));
      }
    });
  }
});

describe('recomputedContext', () => {
  it('is the blend selection in context indices, all for full, none for reuse, the tail for prefix', async () => {
    const engine = await storiesEngine();
    try {
      const { chunks, question } = STORY_SETS[0];
      const ids = chunks.map((c) => engine.model.tokenizer.encode(c));
      const sources = await Promise.all(ids.map(async (t) => memorySource(await precomputeChunk(engine, t))));
      const q = engine.model.tokenizer.encode(question);
      const context = ids.reduce((a, t) => a + t.length, 0);
      const run = async (mode: 'full' | 'reuse' | 'blend' | 'prefix') =>
        (await blendPrefill(engine, sources, q, { mode, ratio: 0.3 })).prefill;

      const blend = await run('blend');
      const picked = recomputedContext(blend);
      expect(picked).toHaveLength(blend.recomputedTokens);
      expect(picked.length).toBeGreaterThan(0);
      expect(picked).toEqual(Array.from(blend.selected![0], (row) => row - 1)); // row 0 is BOS
      expect(picked.every((i, k) => i >= 0 && i < context && (k === 0 || i > picked[k - 1]))).toBe(true);

      expect(recomputedContext(await run('full'))).toEqual([...Array(context).keys()]);
      expect(recomputedContext(await run('reuse'))).toEqual([]);
      const prefix = recomputedContext(await run('prefix'));
      expect(prefix).toEqual([...Array(context - ids[0].length).keys()].map((i) => i + ids[0].length));
    } finally {
      await engine.dispose();
    }
  });
});
