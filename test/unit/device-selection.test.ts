import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blendPrefill,
  memorySource,
  precomputeChunk,
  type BlendOptions,
  type ChunkKvSource,
} from '../../core/blend/index.js';
import { setDevicePipelineLayers } from '../../core/blend/device-steps.js';
import { DeviceChunkTier } from '../../core/cache/device-tier.js';
import { loadQuestions } from '../../core/eval/index.js';
import { Engine, releaseCache } from '../../core/model/engine.js';
import { decode } from '../../core/model/generate.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import { loadLlama2cModel } from '../../core/model/loaders/llama2c.js';
import type { LoadedModel } from '../../core/model/types.js';
import { CBQA_DIR, maxAbsDiff, STORIES_DIR, STORY_SETS } from '../helpers/models.js';
import { noWebGpu } from '../helpers/webgpu.js';

/**
 * The question-aware selections on the device engine against the host path, on the same chunk caches:
 * the same tokens picked at every selecting layer, the scores `question` ranks (the check layer's
 * attention, or the lookahead's) within 1e-4 of the host's relative to the largest, and the answers
 * within the device-vs-host bounds of device-blend.test.ts (first logits 1e-3, 16 greedy tokens). With a
 * question-aware selection both backends also shift the stored rows that stay (stale-shift.ts).
 *
 * Tie rule: both backends rank by score, equal scores in index order (selection.ts). Scores are summed in
 * float32 on the GPU and float64 on the host, so two tokens whose scores differ by less than that rounding
 * at the budget's edge could swap; the picks are compared exactly, so such an input fails here rather than
 * passing silently (none of these inputs has one).
 */
const SELECTIONS: BlendOptions[] = [
  { mode: 'blend', ratio: 0.15, selection: 'question', attention: 'check' },
  { mode: 'blend', ratio: 0.15, selection: 'question', attention: 'lookahead' },
  { mode: 'blend', ratio: 0.15, selection: 'combined', attention: 'check' },
  { mode: 'blend', ratio: 0.15, selection: 'combined', attention: 'lookahead' },
  { mode: 'blend', ratio: 0.15, selection: 'fused' },
  // The default (no selection named): the same on both backends.
  { mode: 'blend', ratio: 0.15 },
  { mode: 'blend', gradualRatios: [0.4, 0.25, 0.15], selection: 'combined' },
];

interface Input {
  sources: ChunkKvSource[];
  q: number[];
  /** A template prefix's cache (exact rows below the context), if any. */
  prefix?: ChunkKvSource;
}

interface Answer {
  logits: Float32Array;
  tokens: number[];
  selected: Int32Array[];
  /** The check layer's ranked scores (what adjustDeviations sees: attention for `question`). */
  ranked: Float64Array;
  uploaded: number;
}

async function answer(engine: Engine, input: Input, o: BlendOptions): Promise<Answer> {
  let ranked = new Float64Array(0);
  const opts: BlendOptions = {
    ...o,
    adjustDeviations: (_l, _rows, s) => void (ranked.length === 0 && (ranked = s.slice())),
  };
  const prefix = input.prefix ?? null;
  const { cache, prefill } = await blendPrefill(engine, input.sources, input.q, opts, 16, prefix);
  const { tokens } = await decode(engine, cache, prefill.firstTokenLogits, {
    maxTokens: 16,
    stopAtEos: false,
  });
  releaseCache(cache);
  const uploaded = prefill.timings.uploadedBytes ?? -1;
  return { logits: prefill.firstTokenLogits, tokens, selected: prefill.selected!, ranked, uploaded };
}

/** Largest |a - b| relative to the largest |a|. */
function relativeDiff(a: Float64Array, b: Float64Array): number {
  const scale = Math.max(...Array.from(a, Math.abs));
  return maxAbsDiff(a, b) / scale;
}

async function models(): Promise<
  { name: string; model: LoadedModel; inputs: (m: LoadedModel) => number[][][] }[]
> {
  const cbqa = loadQuestions(CBQA_DIR).easy;
  const picked = [
    ...cbqa.filter((q) => q.type === 'coref_cross').slice(0, 3),
    ...cbqa.filter((q) => q.type === 'hop1_color').slice(0, 3),
  ];
  return [
    {
      name: 'stories260K',
      model: await loadLlama2cModel(STORIES_DIR),
      inputs: (m) => STORY_SETS.map((s) => [...s.chunks, s.question].map((t) => m.tokenizer.encode(t))),
    },
    {
      name: 'cbqa-3M',
      model: await loadHfModel(CBQA_DIR),
      inputs: (m) => picked.map((q) => [...q.chunks, q.question].map((t) => m.tokenizer.encode(t))),
    },
  ];
}

describe.skipIf(noWebGpu)(
  'question-aware selections on the device (skipped without a WebGPU adapter)',
  async () => {
    const all = noWebGpu ? [] : await models();
    for (const { name, model, inputs } of all) {
      describe(name, () => {
        let cpu: Engine;
        let gpu: Engine;
        const sets: Input[] = [];
        beforeAll(async () => {
          cpu = await Engine.create(model, { threads: 1 });
          gpu = await Engine.create(model, { executionProvider: 'webgpu' });
          for (const ids of inputs(model)) {
            const chunks = ids.slice(0, -1);
            const sources = (await Promise.all(chunks.map((c) => precomputeChunk(cpu, c)))).map(memorySource);
            sets.push({ sources, q: ids[ids.length - 1] });
          }
        });
        afterAll(async () => {
          await cpu?.dispose();
          await gpu?.dispose();
        });

        const cases = [
          ...SELECTIONS.map((o) => ({ o, withPrefix: false })),
          // The first chunk as a template prefix: its rows are exact, never selected or shifted.
          ...SELECTIONS.slice(3, 5).map((o) => ({ o, withPrefix: true })),
        ];
        for (const { o, withPrefix } of cases) {
          const what = `${JSON.stringify(o)}${withPrefix ? ' after a template prefix' : ''}`;
          it(`${what}: the host's picks and scores; answers within 1e-3, 16 greedy tokens`, async () => {
            let worstLogits = 0;
            let worstScores = 0;
            for (const set of sets) {
              const s = withPrefix ? { ...set, sources: set.sources.slice(1), prefix: set.sources[0] } : set;
              const host = await answer(cpu, s, o);
              const device = await answer(gpu, s, o);
              expect(device.selected.map((x) => Array.from(x))).toEqual(
                host.selected.map((x) => Array.from(x)),
              );
              worstScores = Math.max(worstScores, relativeDiff(host.ranked, device.ranked));
              worstLogits = Math.max(worstLogits, maxAbsDiff(host.logits, device.logits));
              expect(device.tokens).toEqual(host.tokens);
            }
            console.info(
              `${name} ${what}: scores ${worstScores.toExponential(2)}, logits ${worstLogits.toExponential(2)}`,
            );
            expect(worstScores).toBeLessThan(1e-4);
            expect(worstLogits).toBeLessThan(1e-3);
          });
        }

        it('the lookahead pipelined one layer per run (reads overlapping it) picks and answers the same', async () => {
          const o: BlendOptions = { mode: 'blend', ratio: 0.15, selection: 'fused' };
          setDevicePipelineLayers(1);
          try {
            for (const s of sets) {
              const host = await answer(cpu, s, o);
              const device = await answer(gpu, s, o);
              expect(Array.from(device.selected[0])).toEqual(Array.from(host.selected[0]));
              expect(maxAbsDiff(host.logits, device.logits)).toBeLessThan(1e-3);
            }
          } finally {
            setDevicePipelineLayers(4);
          }
        });

        it('GPU-tier hits (nothing uploaded, the lookahead in one run) pick and answer as cold requests', async () => {
          const o: BlendOptions = { mode: 'blend', ratio: 0.15, selection: 'fused' };
          const tier = new DeviceChunkTier(1 << 30);
          const s = sets[0];
          const sources = (useTier: boolean, only?: number): ChunkKvSource[] =>
            s.sources.map((src, i) => ({
              ...src,
              ...(useTier && (only === undefined || only === i) ? { device: tier.get(`c${i}`) } : {}),
              keepOnDevice: (c: Parameters<NonNullable<ChunkKvSource['keepOnDevice']>>[0]) =>
                tier.put(`c${i}`, c),
            }));
          const cold = await answer(gpu, { ...s, sources: sources(false) }, o);
          for (let t = 0; t < 100 && tier.size < s.sources.length; t++)
            await new Promise((r) => setTimeout(r, 50));
          expect(tier.size).toBe(s.sources.length);
          const hot = await answer(gpu, { ...s, sources: sources(true) }, o);
          const mixed = await answer(gpu, { ...s, sources: sources(true, 0) }, o);
          expect(hot.uploaded).toBe(0);
          expect(mixed.uploaded).toBeGreaterThan(0);
          for (const r of [hot, mixed]) {
            expect(Array.from(r.selected[0])).toEqual(Array.from(cold.selected[0]));
            expect(maxAbsDiff(r.logits, cold.logits)).toBeLessThan(1e-6);
            expect(r.tokens).toEqual(cold.tokens);
          }
          tier.clear();
        });
      });
    }
  },
);
