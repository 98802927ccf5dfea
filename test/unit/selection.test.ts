import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blendPrefill,
  DEFAULT_CHECK_LAYER,
  memorySource,
  precomputeChunk,
  questionAttention,
  rankFusion,
  selectContext,
  selectionBudget,
  sinkIndices,
  validateBlendOptions,
  type BlendOptions,
  type ChunkKvSource,
  type SelectionStrategy,
} from '../../core/blend/index.js';
import { InvalidArgumentError } from '../../core/errors.js';
import { rotateKeys } from '../../core/kv/rope.js';
import { buildMask, type Engine } from '../../core/model/engine.js';
import { reuseOverFullLowerLayers } from '../helpers/mode-references.js';
import { randomEngine, storiesEngine, STORY_SETS } from '../helpers/models.js';

const STRATEGIES: SelectionStrategy[] = ['deviation', 'question', 'combined', 'fused'];

/** Deterministic pseudo-random scores. */
function scores(n: number, seed: number): Float64Array {
  let x = seed;
  return Float64Array.from({ length: n }, () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 10);
}

describe('selection: the budget', () => {
  it('is at most ratio × context tokens, for any ratio', () => {
    expect(selectionBudget(0.15, 20)).toBe(3);
    expect(selectionBudget(0.15, 10)).toBe(1); // 1.5: never rounded up
    expect(selectionBudget(1, 7)).toBe(7);
    for (let n = 1; n < 200; n += 7) {
      for (const r of [0, 0.05, 0.1, 0.15, 0.3, 0.5, 1])
        expect(selectionBudget(r, n)).toBeLessThanOrEqual(r * n + 1e-9);
    }
  });

  it('holds for every strategy, with and without sinks, and sinks come first', () => {
    const n = 97;
    const s = { deviation: scores(n, 1), attention: scores(n, 2), lookahead: scores(n, 3) };
    const sinks = sinkIndices([30, 40, 27], 2);
    expect(sinks).toEqual([0, 30, 70, 1, 31, 71]);
    for (const strategy of STRATEGIES) {
      for (const budget of [0, 1, 4, 6, 14, 50, 97]) {
        for (const sk of [[], sinks]) {
          const sel = selectContext(strategy, budget, s, sk);
          expect(sel.length).toBe(budget);
          expect(new Set(sel).size).toBe(sel.length);
          expect([...sel].sort((a, b) => a - b)).toEqual(sel);
          for (const i of sk.slice(0, budget)) expect(sel).toContain(i);
        }
      }
    }
  });

  it('ranks by the strategy: question by attention, deviation by deviation, combined half each', () => {
    const dev = Float64Array.from({ length: 10 }, (_, i) => i); // highest: 9, 8, …
    const att = Float64Array.from({ length: 10 }, (_, i) => 10 - i); // highest: 0, 1, …
    const s = { deviation: dev, attention: att };
    expect(selectContext('deviation', 3, s)).toEqual([7, 8, 9]);
    expect(selectContext('question', 3, s)).toEqual([0, 1, 2]);
    expect(selectContext('combined', 4, s)).toEqual([0, 1, 8, 9]);
    expect(selectContext('question', 3, s, [5])).toEqual([0, 1, 5]);
    expect(() => selectContext('question', 3, { deviation: dev, attention: null })).toThrow(/attention/);
    expect(() => selectContext('fused', 3, s)).toThrow(/both attentions/);
  });

  it('fuses ranks as Σ 1/(k + rank): fused picks the best sum of ranks, not of raw scores', () => {
    const a = Float64Array.of(3, 2, 1);
    const b = Float64Array.of(1, 2, 3);
    const c = Float64Array.of(0, 500, 0); // a huge raw score counts only as rank 1
    const f = rankFusion(10, a, b, c);
    // c's tie between 0 and 2 ranks the lower index first.
    expect(f[0]).toBeCloseTo(1 / 11 + 1 / 13 + 1 / 12, 6);
    expect(f[1]).toBeCloseTo(1 / 12 + 1 / 12 + 1 / 11, 6);
    expect(f[2]).toBeCloseTo(1 / 13 + 1 / 11 + 1 / 13, 6);
    const s = { attention: a, lookahead: b, deviation: c };
    expect(selectContext('fused', 1, s)).toEqual([1]);
    expect(selectContext('fused', 2, s)).toEqual([0, 1]);
    expect(selectContext('fused', 1, s, [2])).toEqual([2]);
  });

  it('refuses bad options with InvalidArgumentError; every backend takes every selection', () => {
    const bad: BlendOptions[] = [
      { mode: 'blend', selection: 'nope' as SelectionStrategy },
      { mode: 'blend', sinkTokens: -1 },
      { mode: 'blend', sinkTokens: 1.5 },
      { mode: 'blend', sinkTokens: 1000 },
    ];
    for (const o of bad) expect(() => validateBlendOptions(o, 4)).toThrow(InvalidArgumentError);
    expect(() => validateBlendOptions({ mode: 'blend', selection: 'fused', attention: 'check' }, 4)).toThrow(
      /"fused" measures both/,
    );
    // Every backend runs every selection (the device's picks: device-selection.test.ts).
    for (const selection of ['question', 'combined', 'fused'] as const) {
      expect(() => validateBlendOptions({ mode: 'blend', selection }, 4)).not.toThrow();
    }
    validateBlendOptions({ mode: 'blend', selection: 'deviation', sinkTokens: 4 }, 4);
  });
});

describe('question attention: the values', () => {
  it("is each question token's causal softmax over the keys up to and including its own, by hand", () => {
    // One head, headDim 1 (scale 1): keys 0 (BOS), 1 and 2 (context), ln 2 (the question token itself).
    const keys = Float32Array.from([0, 1, 2, Math.LN2]);
    const q = Float32Array.from([1]); // the question token at position 3: logits = its keys
    const shape = { numHeads: 1, numKvHeads: 1, headDim: 1 };
    const out = questionAttention(shape, q, [3], keys, 1, 3);
    const z = 1 + Math.E + Math.E ** 2 + 2; // exp(0) + exp(1) + exp(2) + exp(ln 2): its own key counts
    expect(out[0]).toBeCloseTo(Math.E / z, 6);
    expect(out[1]).toBeCloseTo(Math.E ** 2 / z, 6);
    // A second head of the same KV group and a second question token add up; GQA reads the group's keys.
    const two = questionAttention(
      { numHeads: 2, numKvHeads: 1, headDim: 1 },
      Float32Array.from([1, 0, 1, 1]),
      [2, 3],
      keys,
      1,
      3,
    );
    // Token at 2: head 0 logits 0, 1, 2 over keys 0…2; head 1 uniform over 3 keys. Token at 3 as above, twice.
    const z2 = 1 + Math.E + Math.E ** 2;
    expect(two[0]).toBeCloseTo(Math.E / z2 + 1 / 3 + (2 * Math.E) / z, 6);
    expect(two[1]).toBeCloseTo(Math.E ** 2 / z2 + 1 / 3 + (2 * Math.E ** 2) / z, 6);
  });
});

/**
 * The question's attention to the context at the check layer, from the model's weights in plain
 * arithmetic: hidden states of a full causal prefill below the check layer (one engine layer run each),
 * then RMSNorm, the q and k projections and RoPE here, and softmax over each query's causal keys.
 */
async function referenceAttention(engine: Engine, ids: number[], check: number, ctx: [number, number]) {
  const cfg = engine.config;
  const { hiddenSize: D, numHeads: H, numKvHeads: KV, headDim: hd } = cfg;
  const N = ids.length;
  const pos = Int32Array.from({ length: N }, (_, i) => i);
  let hidden = engine.embed(ids);
  for (let l = 0; l < check; l++) {
    const r = await engine.runLayer(
      l,
      hidden,
      engine.rope(pos),
      new Float32Array(0),
      new Float32Array(0),
      buildMask(pos, []),
    );
    hidden = r.hidden;
  }
  const w = engine.model.weights.layers[check];
  const norm = w.attnNorm.f32();
  const project = (m: Float32Array, b: Float32Array | null, out: number) => {
    const y = new Float32Array(N * out);
    for (let t = 0; t < N; t++) {
      let ms = 0;
      for (let d = 0; d < D; d++) ms += hidden[t * D + d] ** 2;
      const inv = 1 / Math.sqrt(ms / D + cfg.rmsNormEps);
      for (let o = 0; o < out; o++) {
        let s = b ? b[o] : 0;
        for (let d = 0; d < D; d++) s += m[o * D + d] * hidden[t * D + d] * inv * norm[d];
        y[t * out + o] = s;
      }
    }
    return y;
  };
  const q = project(w.wq.f32(), w.bq?.f32() ?? null, H * hd);
  const k = project(w.wk.f32(), w.bk?.f32() ?? null, KV * hd);
  rotateKeys(q, N, H, hd, cfg.ropeLayout, engine.invFreq, pos);
  rotateKeys(k, N, KV, hd, cfg.ropeLayout, engine.invFreq, pos);
  const score = new Float64Array(ctx[1] - ctx[0]);
  for (let i = ctx[1]; i < N; i++) {
    for (let h = 0; h < H; h++) {
      const kv = Math.floor(h / (H / KV));
      const logit = Array.from({ length: i + 1 }, (_, j) => {
        let s = 0;
        for (let d = 0; d < hd; d++) s += q[(i * H + h) * hd + d] * k[(j * KV + kv) * hd + d];
        return s / Math.sqrt(hd);
      });
      const max = Math.max(...logit);
      const e = logit.map((x) => Math.exp(x - max));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let j = ctx[0]; j < ctx[1]; j++) score[j - ctx[0]] += e[j] / sum;
    }
  }
  return score;
}

for (const which of ['stories260K', 'random GQA model (Hugging Face RoPE layout)'] as const) {
  describe(`question-aware selection on ${which}`, () => {
    let engine: Engine;
    let sources: ChunkKvSource[];
    let question: number[];
    beforeAll(async () => {
      engine = which === 'stories260K' ? await storiesEngine() : await randomEngine({ numLayers: 4 }, 11);
      const tok = engine.model.tokenizer;
      const set = STORY_SETS[0];
      sources = await Promise.all(
        set.chunks.map(async (c) => memorySource(await precomputeChunk(engine, tok.encode(c)))),
      );
      question = tok.encode(set.question);
    });
    afterAll(() => engine.dispose());

    it('recomputes the context tokens the question attends to most at the check layer', async () => {
      for (const checkLayer of [1, 2]) {
        const { prefill } = await blendPrefill(engine, sources, question, {
          mode: 'blend',
          selection: 'question',
          attention: 'check',
          ratio: 0.15,
          checkLayer,
        });
        const ids = [engine.config.bosTokenId, ...sources.flatMap((s) => s.tokenIds), ...question];
        const ctx: [number, number] = [1, 1 + prefill.contextTokens];
        const ref = await referenceAttention(engine, ids, checkLayer, ctx);
        const budget = selectionBudget(0.15, prefill.contextTokens);
        const picked = Array.from(prefill.selected![0], (p) => p - 1);
        expect(picked).toHaveLength(budget);
        // The reference's top-`budget`, up to ties within floating-point noise.
        const kth = [...ref].sort((a, b) => b - a)[budget - 1];
        for (const i of picked) expect(ref[i]).toBeGreaterThanOrEqual(kth - 1e-4);
        // And it is not what deviation picks (the test would pass for the wrong strategy otherwise).
        const dev = await blendPrefill(engine, sources, question, {
          mode: 'blend',
          selection: 'deviation',
          ratio: 0.15,
          checkLayer,
        });
        expect(Array.from(dev.prefill.selected![0])).not.toEqual(Array.from(prefill.selected![0]));
      }
    });

    it("scores each context token with the question's attention the reference computes from the raw Q/K", async () => {
      for (const checkLayer of [1, 2]) {
        let scores: Float64Array | null = null;
        const { prefill } = await blendPrefill(engine, sources, question, {
          mode: 'blend',
          selection: 'question',
          attention: 'check',
          ratio: 0.15,
          checkLayer,
          adjustDeviations: (layer, _rows, ranked) => {
            if (layer === checkLayer) scores = Float64Array.from(ranked);
          },
        });
        const ids = [engine.config.bosTokenId, ...sources.flatMap((s) => s.tokenIds), ...question];
        const ref = await referenceAttention(engine, ids, checkLayer, [1, 1 + prefill.contextTokens]);
        expect(scores).not.toBeNull();
        expect(scores!).toHaveLength(ref.length);
        // Values, not only the order: each within 1e-4 of the reference (sums over heads × question tokens).
        const worst = Math.max(...ref.map((r, i) => Math.abs(r - scores![i])));
        expect(worst).toBeLessThan(1e-4);
      }
    });

    it('keeps every layer within ratio × context tokens, for every strategy, sinks and gradual filtering', async () => {
      for (const selection of STRATEGIES) {
        for (const o of [
          { ratio: 0.05 },
          { ratio: 0.15, sinkTokens: 2 },
          { ratio: 0.3, sinkTokens: 64 },
          { ratio: 0.15, attention: 'lookahead' },
          { gradualRatios: [0.3, 0.15, 0.05] },
        ] as Partial<BlendOptions>[]) {
          const { attention, ...rest } = o;
          const { prefill } = await blendPrefill(engine, sources, question, {
            mode: 'blend',
            selection,
            ...rest,
            ...(selection !== 'fused' && { attention }),
          });
          const ratios = o.gradualRatios ?? [o.ratio!];
          prefill.selected!.forEach((rows, l) => {
            const r = ratios[Math.min(l, ratios.length - 1)];
            expect(rows.length).toBeLessThanOrEqual(r * prefill.contextTokens);
            expect(rows.length).toBe(selectionBudget(r, prefill.contextTokens));
          });
          if (o.sinkTokens === 2) {
            let at = 1;
            for (const s of sources) {
              expect(prefill.selected![0]).toContain(at);
              expect(prefill.selected![0]).toContain(at + 1);
              at += s.tokenIds.length;
            }
          }
        }
      }
    });

    it('reads each chunk layer from the check layer on exactly once, for every strategy', async () => {
      const L = engine.config.numLayers;
      for (const selection of STRATEGIES) {
        const reads = new Map<string, number>();
        const counted: ChunkKvSource[] = sources.map((s, c) => ({
          tokenIds: s.tokenIds,
          layer: (l: number) => {
            reads.set(`${c}:${l}`, (reads.get(`${c}:${l}`) ?? 0) + 1);
            return s.layer(l);
          },
        }));
        await blendPrefill(engine, counted, question, { mode: 'blend', selection, ratio: 0.15 });
        const expected = new Map<string, number>();
        for (let c = 0; c < sources.length; c++)
          for (let l = DEFAULT_CHECK_LAYER; l < L; l++) expected.set(`${c}:${l}`, 1);
        expect(Object.fromEntries(reads)).toEqual(Object.fromEntries(expected));
      }
    });

    it("equals full at ratio 1, and at ratio 0 reuse over full prefill's layers 0…check", async () => {
      const full = await blendPrefill(engine, sources, question, { mode: 'full' });
      const reuse = await blendPrefill(engine, sources, question, { mode: 'reuse' });
      const context = full.prefill.promptTokens - question.length;
      const lowerFresh = await reuseOverFullLowerLayers(engine, full.cache, reuse.cache, context, question);
      for (const [selection, attention] of [
        ['question', 'check'],
        ['combined', 'check'],
        ['combined', 'lookahead'],
        ['fused', undefined],
      ] as const) {
        const o = { mode: 'blend', selection, attention } as const;
        const one = await blendPrefill(engine, sources, question, { ...o, ratio: 1 });
        const zero = await blendPrefill(engine, sources, question, { ...o, ratio: 0 });
        const diff = (a: Float32Array, b: Float32Array) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));
        expect(diff(one.prefill.firstTokenLogits, full.prefill.firstTokenLogits)).toBeLessThan(1e-4);
        expect(diff(zero.prefill.firstTokenLogits, lowerFresh)).toBeLessThan(1e-4);
      }
    });
  });
}
