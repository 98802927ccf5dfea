import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blendPrefill,
  DEFAULT_CHECK_LAYER,
  memorySource,
  precomputeChunk,
  type BlendOptions,
  type ChunkKvSource,
} from '../../core/blend/index.js';
import { Engine } from '../../core/model/engine.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import { decode } from '../../core/model/generate.js';
import { reuseOverFullLowerLayers } from '../helpers/mode-references.js';
import { maxAbsDiff, randomEngine, storiesEngine, STORY_SETS } from '../helpers/models.js';

/** First-token logits and 16 greedy tokens of one mode. */
async function run(engine: Engine, sources: ChunkKvSource[], q: number[], o: BlendOptions) {
  const { cache, prefill } = await blendPrefill(engine, sources, q, o, 16);
  const { tokens } = await decode(engine, cache, prefill.firstTokenLogits, {
    maxTokens: 16,
    stopAtEos: false,
  });
  return { logits: prefill.firstTokenLogits, tokens, prefill };
}

const TOL = 1e-4;
const QWEN2_FIXTURE = fileURLToPath(new URL('../fixtures/hf/qwen2-bias', import.meta.url));

for (const which of [
  'stories260K',
  'random HF-layout GQA model',
  'Hugging Face Qwen2 fixture (q/k/v biases)',
] as const) {
  describe(`mode identities on ${which}`, () => {
    let engine: Engine;
    /** Each set, with full's and reuse's logits and the question-aware r=0 reference (below). */
    let sets: {
      sources: ChunkKvSource[];
      q: number[];
      lowerFresh: { full: Float32Array; reuse: Float32Array; ref: Float32Array };
    }[];
    beforeAll(async () => {
      engine =
        which === 'stories260K'
          ? await storiesEngine()
          : which === 'random HF-layout GQA model'
            ? await randomEngine({ numLayers: 4 }, 7, { prefillBlock: 8 }) // small blocks: blocked paths too
            : await Engine.create(await loadHfModel(QWEN2_FIXTURE), { threads: 1 });
      const tok = engine.model.tokenizer;
      sets = [];
      for (const s of STORY_SETS.slice(0, 3)) {
        const sources = await Promise.all(
          s.chunks.map(async (c) => memorySource(await precomputeChunk(engine, tok.encode(c)))),
        );
        const q = tok.encode(s.question);
        const full = await blendPrefill(engine, sources, q, { mode: 'full' });
        const reuse = await blendPrefill(engine, sources, q, { mode: 'reuse' });
        const context = full.prefill.promptTokens - q.length;
        const ref = await reuseOverFullLowerLayers(engine, full.cache, reuse.cache, context, q);
        const logits = { full: full.prefill.firstTokenLogits, reuse: reuse.prefill.firstTokenLogits };
        sets.push({ sources, q, lowerFresh: { ...logits, ref } });
      }
    });
    afterAll(() => engine.dispose());

    const identities: [string, BlendOptions, BlendOptions, 'all' | 'one'][] = [
      ['blend r=1 equals full', { mode: 'blend', ratio: 1 }, { mode: 'full' }, 'all'],
      [
        'blend r=0 (deviation selection) equals reuse',
        { mode: 'blend', ratio: 0, selection: 'deviation' },
        { mode: 'reuse' },
        'all',
      ],
      ['prefix equals full', { mode: 'prefix' }, { mode: 'full' }, 'all'],
      ['reuse with a single chunk equals full', { mode: 'reuse' }, { mode: 'full' }, 'one'],
      [
        'gradual filtering at r=1 equals full',
        { mode: 'blend', gradualRatios: [1] },
        { mode: 'full' },
        'all',
      ],
      [
        'blend r=1 checking at the last layer equals full',
        { mode: 'blend', ratio: 1, checkLayer: -1 },
        { mode: 'full' },
        'all',
      ],
    ];
    for (const [name, a, b, chunks] of identities) {
      it(`${name}: first-token logits within ${TOL}, 16 greedy tokens identical`, async () => {
        for (const s of sets) {
          const src = chunks === 'one' ? s.sources.slice(0, 1) : s.sources;
          // checkLayer -1 stands for the model's last layer.
          const last = engine.config.numLayers - 1;
          const x = await run(engine, src, s.q, a.checkLayer === -1 ? { ...a, checkLayer: last } : a);
          const y = await run(engine, src, s.q, b);
          expect(maxAbsDiff(x.logits, y.logits)).toBeLessThan(TOL);
          expect(x.tokens).toEqual(y.tokens);
        }
      });
    }

    // Question-aware selections keep the check layer's fresh rows of every token (steps.ts), so at r=0
    // they equal reuse over full prefill's rows up to the check layer, not reuse itself.
    for (const selection of ['question', 'combined', 'fused'] as const) {
      it(`blend r=0 (${selection}) equals reuse over full prefill's layers 0…check: logits within ${TOL}`, async () => {
        for (const s of sets) {
          const { full, reuse, ref } = s.lowerFresh;
          const x = await run(engine, s.sources, s.q, { mode: 'blend', ratio: 0, selection });
          expect(maxAbsDiff(x.logits, ref)).toBeLessThan(TOL);
          // Not vacuous: the reference is not reuse, nor full where layers lie above the check layer
          // (the Qwen2 fixture has two, so there it is full's).
          expect(maxAbsDiff(ref, reuse)).toBeGreaterThan(1e-3);
          const above = engine.config.numLayers > DEFAULT_CHECK_LAYER + 1;
          if (above) expect(maxAbsDiff(ref, full)).toBeGreaterThan(1e-3);
          else expect(maxAbsDiff(ref, full)).toBeLessThan(TOL);
        }
      });
    }

    it('reuse differs from full with several chunks (the identities above are not vacuous)', async () => {
      const s = sets[0];
      const x = await run(engine, s.sources, s.q, { mode: 'reuse' });
      const y = await run(engine, s.sources, s.q, { mode: 'full' });
      expect(maxAbsDiff(x.logits, y.logits)).toBeGreaterThan(1e-3);
    });

    it('recomputes round(r × context tokens) tokens in blend', async () => {
      const s = sets[0];
      const r = await run(engine, s.sources, s.q, { mode: 'blend', ratio: 0.3 });
      expect(r.prefill.recomputedTokens).toBe(Math.floor(0.3 * r.prefill.contextTokens));
      expect(r.prefill.promptTokens).toBe(1 + r.prefill.contextTokens + s.q.length);
    });
  });
}
