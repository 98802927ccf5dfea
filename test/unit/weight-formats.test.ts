import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../core/model/engine.js';
import { argmax } from '../../core/model/generate.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import { loadLlama2cModel } from '../../core/model/loaders/llama2c.js';
import { EXTERNAL_MIN_BYTES, GraphBuilder } from '../../core/model/onnx/builder.js';
import { createSession } from '../../core/model/onnx/session.js';
import type { LoadedModel } from '../../core/model/types.js';
import { dequantizeQ4, quantizeQ4, q4Blocks } from '../../core/model/weights/quantize.js';
import { quantizeQ4Parallel } from '../../core/model/weights/quantize-pool.js';
import { heldWeight, storedToFloat32, type Weight } from '../../core/model/weights/weight.js';
import { float16BitsToFloat32 } from '../../core/util/half.js';
import { CBQA_DIR, STORIES_DIR, dequantizedModel, maxAbsDiff } from '../helpers/models.js';

const wave = (n: number, f = 0.37) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * f) * (1 + (i % 5)));

/** KL(P || Q) of the softmaxes of two logit vectors. */
function kl(p: Float32Array, q: Float32Array): number {
  const soft = (a: Float32Array) => {
    const m = Math.max(...a);
    const e = Array.from(a, (x) => Math.exp(x - m));
    const s = e.reduce((x, y) => x + y, 0);
    return e.map((x) => x / s);
  };
  const P = soft(p);
  const Q = soft(q);
  return P.reduce((k, pi, i) => (pi > 0 ? k + pi * Math.log(pi / Math.max(Q[i], 1e-30)) : k), 0);
}

async function greedy(
  model: LoadedModel,
  opts: Parameters<typeof Engine.create>[1],
  prompt: number[],
  n: number,
) {
  const engine = await Engine.create(model, { threads: 1, ...opts });
  try {
    const cache = engine.newSequenceCache(prompt.length + n);
    let logits = await engine.forward(cache, prompt);
    const first = logits.slice();
    const tokens: number[] = [];
    for (let i = 0; i < n; i++) {
      tokens.push(argmax(logits));
      logits = await engine.forward(cache, [tokens[i]]);
    }
    return { first, tokens };
  } finally {
    await engine.dispose();
  }
}

const PROMPT = [1, 403, 407, 261, 378, 300, 290, 280];

describe('4-bit block quantization (MatMulNBits layout)', () => {
  it('round-trips within half a step, saturating the opposite end by at most one step', () => {
    const rows = 7;
    const cols = 75; // not a multiple of the block: the last block is padded
    const w = wave(rows * cols);
    const q = quantizeQ4(w, rows, cols);
    const nb = q4Blocks(cols);
    expect(nb).toBe(3);
    expect(q.packed.length).toBe(rows * nb * 16);
    const back = dequantizeQ4(q);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const s = Math.abs(q.scales[r * nb + Math.floor(c / 32)] as number);
        const err = Math.abs(back[r * cols + c] - w[r * cols + c]);
        expect(err).toBeLessThanOrEqual(s + 1e-6);
        // Only values of the opposite sign to the block's largest, beyond +7 steps, may exceed half a step.
        if (Math.abs(w[r * cols + c]) <= 7 * s) expect(err).toBeLessThanOrEqual(s / 2 + 1e-6);
      }
    }
    // The block's value of largest magnitude is exact (code 0).
    const first = w.subarray(0, 32);
    const m = first.reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a), 0);
    expect(back[first.indexOf(m)]).toBeCloseTo(m, 5);
  });

  it('on worker threads the same bits as on one (a matrix large enough to be split)', () => {
    const [rows, cols] = [1100, 4096];
    const w = wave(rows * cols, 0.013);
    for (const type of ['float', 'float16'] as const) {
      const one = quantizeQ4(w, rows, cols, type);
      const many = quantizeQ4Parallel(heldWeight(w, [rows, cols]), type);
      expect(Buffer.compare(Buffer.from(many.packed), Buffer.from(one.packed))).toBe(0);
      expect(Array.from(many.scales)).toEqual(Array.from(one.scales));
    }
    // A bf16 checkpoint's bytes, widened by the workers themselves.
    const bits = new Uint16Array(new Uint32Array(w.buffer).map((u) => u >>> 16));
    const raw = new Uint8Array(bits.buffer);
    const bf16: Weight = {
      ...heldWeight(w, [rows, cols]),
      dtype: 'bfloat16',
      raw: () => raw,
      f32: () => storedToFloat32('bfloat16', raw),
    };
    const one = quantizeQ4(bf16.f32(), rows, cols);
    expect(Buffer.compare(Buffer.from(quantizeQ4Parallel(bf16).packed), Buffer.from(one.packed))).toBe(0);
  });

  it('fp16 scales: codes are taken against the rounded scale the kernel multiplies by', () => {
    const w = wave(4 * 64, 0.11);
    const q = quantizeQ4(w, 4, 64, 'float16');
    expect(q.scales).toBeInstanceOf(Uint16Array);
    const back = dequantizeQ4(q);
    for (let i = 0; i < w.length; i++) {
      const s = Math.abs(float16BitsToFloat32((q.scales as Uint16Array)[Math.floor(i / 32)]));
      expect(Math.abs(back[i] - w[i])).toBeLessThanOrEqual(s + 1e-6);
    }
  });

  it("onnxruntime's MatMulNBits computes x · dequantized(W)ᵀ (accuracy level 0, CPU)", async () => {
    const [M, K, N] = [3, 96, 10];
    const w = wave(N * K, 0.05);
    const q = quantizeQ4(w, N, K);
    const g = new GraphBuilder('q4');
    const x = g.input('x', 'float', [M, K]);
    g.tensor('B', 'uint8', [N, q4Blocks(K), 16], q.packed);
    g.tensor('S', 'float', [N * q4Blocks(K)], q.scales as Float32Array);
    const attrs = { K, N, bits: 4, block_size: 32, accuracy_level: 0 };
    g.output('y', g.op('MatMulNBits', [x, 'B', 'S'], attrs, 1, 'com.microsoft')[0], 'float', [M, N]);
    const s = await createSession(g.toModel(), { executionProviders: ['cpu'] });
    const xs = wave(M * K, 0.21);
    const y = (await s.run({ x: new ort.Tensor('float32', xs, [M, K]) })).y.data as Float32Array;
    await s.release();
    const dq = dequantizeQ4(q);
    const ref = new Float32Array(M * N);
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) for (let k = 0; k < K; k++) ref[i * N + j] += xs[i * K + k] * dq[j * K + k];
    expect(maxAbsDiff(y, ref)).toBeLessThan(1e-4);
  });
});

describe('graphs with external data', () => {
  it('moves large initializers out of the protobuf and computes what the inline graph computes', async () => {
    const build = () => {
      const g = new GraphBuilder('ext');
      const x = g.input('x', 'float', [2, 64]);
      g.weight('w', wave(64 * 64), [64, 64]);
      g.weight('b', new Float32Array([0.5]), [1]); // small: stays inline
      g.output('y', g.o('Add', [g.o('MatMul', [x, 'w']), 'b']), 'float', [2, 64]);
      return g;
    };
    const model = build().toModel();
    expect(model.externalData.map((d) => d.data.byteLength)).toEqual([64 * 64 * 4]);
    expect(64 * 64 * 4).toBeGreaterThanOrEqual(EXTERNAL_MIN_BYTES);
    const inline = build().toBytes();
    expect(model.bytes.byteLength).toBeLessThan(inline.byteLength - 64 * 64 * 4 + 512);
    const feeds = { x: new ort.Tensor('float32', wave(128, 0.3), [2, 64]) };
    const a = await createSession(model, { executionProviders: ['cpu'] });
    const b = await ort.InferenceSession.create(inline, { executionProviders: ['cpu'] });
    expect((await a.run(feeds)).y.data).toEqual((await b.run(feeds)).y.data);
    await a.release();
    await b.release();
  });
});

describe('weight formats on the CPU engine', () => {
  it('fp16 weights stay within KL 1e-5 of fp32 on stories260K (24 greedy tokens identical)', async () => {
    const m = await loadLlama2cModel(STORIES_DIR);
    const ref = await greedy(m, {}, PROMPT, 24);
    const half = await greedy(m, { weights: 'fp16' }, PROMPT, 24);
    expect(kl(ref.first, half.first)).toBeLessThan(1e-5);
    expect(half.tokens).toEqual(ref.tokens);
  });

  for (const [name, load] of [
    ['stories260K', () => loadLlama2cModel(STORIES_DIR)],
    ['cbqa-3M', () => loadHfModel(CBQA_DIR)],
  ] as const) {
    it(`q4 computes the dequantized model (${name}: KL < 1e-2 and first logits within 0.3; int8 activations)`, async () => {
      const m = await load();
      const reference = await greedy(dequantizedModel(m), {}, PROMPT, 0);
      const q4 = await greedy(m, { weights: 'q4' }, PROMPT, 0);
      expect(kl(reference.first, q4.first)).toBeLessThan(1e-2);
      expect(maxAbsDiff(reference.first, q4.first)).toBeLessThan(0.3);
      // And q4 is not fp32: the 4-bit rounding is visible in the logits.
      const exact = await greedy(m, {}, PROMPT, 0);
      expect(maxAbsDiff(exact.first, q4.first)).toBeGreaterThan(1e-3);
    });
  }

  it('q4 caches are told apart from fp32 caches (kvFingerprint); fp16 shares fp32 caches', async () => {
    const m = await loadLlama2cModel(STORIES_DIR);
    const [a, b, c] = await Promise.all(
      (['fp32', 'fp16', 'q4'] as const).map((weights) => Engine.create(m, { threads: 1, weights })),
    );
    expect(a.kvFingerprint).toBe(m.fingerprint);
    expect(b.kvFingerprint).toBe(m.fingerprint);
    expect(c.kvFingerprint).not.toBe(m.fingerprint);
    await Promise.all([a, b, c].map((e) => e.dispose()));
  });
});
