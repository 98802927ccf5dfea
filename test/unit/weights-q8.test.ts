import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { blendPrefill, klDivergence, tokenIdsOnly } from '../../core/blend/index.js';
import { Engine, releaseCache } from '../../core/model/engine.js';
import { argmax } from '../../core/model/generate.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import { loadLlama2cModel } from '../../core/model/loaders/llama2c.js';
import { GraphBuilder } from '../../core/model/onnx/builder.js';
import { createRandomModel } from '../../core/model/random.js';
import type { LoadedModel } from '../../core/model/types.js';
import type { WeightFormat } from '../../core/model/weights/format.js';
import { dequantize, q4Blocks, quantizeQ8 } from '../../core/model/weights/quantize.js';
import { quantizeParallel } from '../../core/model/weights/quantize-pool.js';
import { heldWeight } from '../../core/model/weights/weight.js';
import {
  CBQA_DIR,
  dequantizedModel,
  maxAbsDiff,
  SMALL_SHAPE,
  STORIES_DIR,
  STORY_SETS,
} from '../helpers/models.js';
import { noWebGpu } from '../helpers/webgpu.js';

const wave = (n: number, f = 0.37) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * f) * (1 + (i % 5)));

/** y = x · Wᵀ through one MatMulNBits (bits 8) on a provider, and the same product over dequantize(W). */
async function q8Product(ep: 'cpu' | 'webgpu', accuracyLevel: number) {
  const [M, K, N] = [3, 96, 10];
  const q = quantizeQ8(wave(N * K, 0.05), N, K);
  const g = new GraphBuilder('q8');
  const x = g.input('x', 'float', [M, K]);
  g.tensor('B', 'uint8', [N, q4Blocks(K), 32], q.packed);
  g.tensor('S', 'float', [N * q4Blocks(K)], q.scales as Float32Array);
  const attrs = { K, N, bits: 8, block_size: 32, accuracy_level: accuracyLevel };
  g.output('y', g.op('MatMulNBits', [x, 'B', 'S'], attrs, 1, 'com.microsoft')[0], 'float', [M, N]);
  const s = await ort.InferenceSession.create(g.toBytes(), { executionProviders: [ep] });
  const xs = wave(M * K, 0.21);
  const y = (await s.run({ x: new ort.Tensor('float32', xs, [M, K]) })).y.data as Float32Array;
  await s.release();
  const dq = dequantize(q);
  const ref = new Float32Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) for (let k = 0; k < K; k++) ref[i * N + j] += xs[i * K + k] * dq[j * K + k];
  return { y, ref, scale: Math.max(...ref.map(Math.abs)) };
}

/** First-token logits of every stories260K story set (full prefill) and 16 greedy tokens after them. */
async function storyAnswers(model: LoadedModel, opts: Parameters<typeof Engine.create>[1]) {
  const engine = await Engine.create(model, { threads: 1, ...opts });
  const tok = model.tokenizer;
  const out: { first: Float32Array; tokens: number[] }[] = [];
  for (const set of STORY_SETS) {
    const chunks = set.chunks.map((c) => tokenIdsOnly(tok.encode(c)));
    const { cache, prefill } = await blendPrefill(engine, chunks, tok.encode(set.question), { mode: 'full' });
    const first = prefill.firstTokenLogits.slice();
    const tokens = [argmax(first)];
    for (let i = 1; i < 16; i++) tokens.push(argmax(await engine.forward(cache, [tokens[i - 1]])));
    releaseCache(cache);
    out.push({ first, tokens });
  }
  await engine.dispose();
  return out;
}

type Answers = Awaited<ReturnType<typeof storyAnswers>>;
const meanKl = (a: Answers, b: Answers) =>
  a.reduce((s, x, i) => s + klDivergence(x.first, b[i].first), 0) / a.length;
const agreement = (a: Answers, b: Answers) =>
  a.reduce((s, x, i) => s + x.tokens.filter((t, j) => t === b[i].tokens[j]).length / 16, 0) / a.length;

async function firstLogits(model: LoadedModel, opts: Parameters<typeof Engine.create>[1], prompt: number[]) {
  const engine = await Engine.create(model, { threads: 1, ...opts });
  const logits = await engine.forward(engine.newSequenceCache(prompt.length), prompt);
  await engine.dispose();
  return logits;
}

const PROMPT = [1, 403, 407, 261, 378, 300, 290, 280];

describe('8-bit block quantization (q8, MatMulNBits bits 8)', () => {
  it('round-trips within half a step; the largest magnitude is exact (code 0)', () => {
    const [rows, cols] = [7, 75]; // not a multiple of the block: the last block is padded
    const w = wave(rows * cols);
    const q = quantizeQ8(w, rows, cols);
    expect(q.packed.length).toBe(rows * 3 * 32);
    const back = dequantize(q);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const s = Math.abs(q.scales[r * 3 + Math.floor(c / 32)] as number);
        const err = Math.abs(back[r * cols + c] - w[r * cols + c]);
        if (Math.abs(w[r * cols + c]) <= 127 * s) expect(err).toBeLessThanOrEqual(s / 2 + 1e-6);
        else expect(err).toBeLessThanOrEqual(s + 1e-6);
      }
    }
    const first = w.subarray(0, 32);
    const m = first.reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a), 0);
    expect(back[first.indexOf(m)]).toBeCloseTo(m, 5);
    expect(q.packed[first.indexOf(m)]).toBe(0);
  });

  it('on worker threads the same bits as on one (a matrix large enough to be split)', () => {
    const [rows, cols] = [1100, 4096];
    const w = wave(rows * cols, 0.013);
    for (const type of ['float', 'float16'] as const) {
      const one = quantizeQ8(w, rows, cols, type);
      const many = quantizeParallel(heldWeight(w, [rows, cols]), type, 8);
      expect(many.bits).toBe(8);
      expect(Buffer.compare(Buffer.from(many.packed), Buffer.from(one.packed))).toBe(0);
      expect(Array.from(many.scales)).toEqual(Array.from(one.scales));
    }
  });

  it('the CPU provider computes x · dequantized(W)ᵀ: 1e-4 at accuracy level 0, 2% with int8 activations', async () => {
    const exact = await q8Product('cpu', 0);
    expect(maxAbsDiff(exact.y, exact.ref)).toBeLessThan(1e-4);
    const int8 = await q8Product('cpu', 4);
    expect(maxAbsDiff(int8.y, int8.ref)).toBeLessThan(0.02 * int8.scale);
  });
});

describe('q8 weights on the CPU engine', () => {
  for (const [name, load] of [
    ['stories260K', () => loadLlama2cModel(STORIES_DIR)],
    ['cbqa-3M', () => loadHfModel(CBQA_DIR)],
  ] as const) {
    it(`computes the dequantized model (${name}: KL < 3e-3, first logits within 0.3; int8 activations)`, async () => {
      const m = await load();
      const reference = await firstLogits(dequantizedModel(m, 8), {}, PROMPT);
      const q8 = await firstLogits(m, { weights: 'q8' }, PROMPT);
      expect(klDivergence(reference, q8)).toBeLessThan(3e-3);
      expect(maxAbsDiff(reference, q8)).toBeLessThan(0.3);
      // And q8 is not fp32: the rounding is visible in the logits.
      expect(maxAbsDiff(await firstLogits(m, {}, PROMPT), q8)).toBeGreaterThan(1e-3);
    });
  }

  it('stories260K: q8 is within 0.002 of fp16 (mean first-token KL, 6 story sets) and far closer than q4', async () => {
    const m = await loadLlama2cModel(STORIES_DIR);
    const by = new Map<WeightFormat, Answers>();
    for (const w of ['fp32', 'fp16', 'q4', 'q8'] as const) by.set(w, await storyAnswers(m, { weights: w }));
    const fp16 = by.get('fp16')!;
    const q8 = meanKl(fp16, by.get('q8')!);
    const q4 = meanKl(fp16, by.get('q4')!);
    expect(q8).toBeLessThan(0.002);
    expect(q8).toBeLessThan(q4 / 20);
    expect(meanKl(by.get('fp32')!, by.get('q8')!)).toBeLessThan(meanKl(by.get('fp32')!, by.get('q4')!) / 20);
    expect(agreement(fp16, by.get('q8')!)).toBeGreaterThan(Math.max(0.9, agreement(fp16, by.get('q4')!)));
  });

  it('q8 caches are told apart from fp32 and q4 caches (kvFingerprint)', async () => {
    const m = await loadLlama2cModel(STORIES_DIR);
    const engines = await Promise.all(
      (['fp32', 'q4', 'q8'] as const).map((weights) => Engine.create(m, { threads: 1, weights })),
    );
    expect(new Set(engines.map((e) => e.kvFingerprint)).size).toBe(3);
    await Promise.all(engines.map((e) => e.dispose()));
  });
});

describe.skipIf(noWebGpu)('q8 weights on the device (WebGPU; skipped without an adapter)', () => {
  it('the WebGPU provider computes x · dequantized(W)ᵀ with bits 8 (1e-4)', async () => {
    const r = await q8Product('webgpu', 0);
    expect(maxAbsDiff(r.y, r.ref)).toBeLessThan(1e-4);
  });

  it('a q8 device engine computes the dequantized model (first logits 1e-3, 16 greedy tokens)', async () => {
    const model = createRandomModel(SMALL_SHAPE, 7);
    const prompt = Array.from({ length: 40 }, (_, i) => (i * 37) % 300);
    const steps = async (engine: Engine) => {
      const cache = engine.newSequenceCache(prompt.length + 16);
      let logits = await engine.forward(cache, prompt);
      const first = logits.slice();
      const tokens: number[] = [];
      for (let i = 0; i < 16; i++) {
        tokens.push(argmax(logits));
        logits = await engine.forward(cache, [tokens[i]]);
      }
      await engine.dispose();
      return { first, tokens };
    };
    const a = await steps(await Engine.create(dequantizedModel(model, 8), { threads: 1 }));
    const b = await steps(
      await Engine.create(model, { executionProvider: 'webgpu', deviceDtype: 'float32', weights: 'q8' }),
    );
    expect(maxAbsDiff(a.first, b.first)).toBeLessThan(1e-3);
    expect(b.tokens).toEqual(a.tokens);
  });

  it('stories260K on the device (fp16 compute): q8 within 0.002 of fp16 weights, far closer than q4', async () => {
    const m = await loadLlama2cModel(STORIES_DIR);
    const on = (weights: WeightFormat) =>
      storyAnswers(m, { executionProvider: 'webgpu', deviceDtype: 'float16', weights });
    const fp16 = await on('fp16');
    const q8 = meanKl(fp16, await on('q8'));
    expect(q8).toBeLessThan(0.002);
    expect(q8).toBeLessThan(meanKl(fp16, await on('q4')) / 20);
  });
});
