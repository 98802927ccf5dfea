/**
 * How chunk caches reach the device (core/blend/device-steps.ts, core/model/device/host-pack.ts and
 * graphs/assemble.ts): stored bytes uploaded as they are and widened or dequantized on the GPU, layer
 * groups pipelined, GPU-tier hits uploading nothing. Each path is checked against the same values handed
 * over as fp32: the device computes in fp32 here, so widening fp16 and dequantizing int8 are exact and
 * the answers must agree to rounding (1e-5) and token for token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blendPrefill,
  precomputeChunks,
  type BlendOptions,
  type ChunkKvSource,
} from '../../core/blend/index.js';
import { setDevicePipelineLayers } from '../../core/blend/device-steps.js';
import { DeviceChunkTier } from '../../core/cache/device-tier.js';
import type { StoredKvLayer } from '../../core/kv/stored.js';
import { Engine, releaseCache } from '../../core/model/engine.js';
import { decode } from '../../core/model/generate.js';
import { loadLlama2cModel } from '../../core/model/loaders/llama2c.js';
import {
  float16BitsToFloat32,
  float16ArrayToFloat32,
  float32ArrayToFloat16,
  float32ToFloat16Bits,
} from '../../core/util/half.js';
import { maxAbsDiff, STORIES_DIR, STORY_SETS } from '../helpers/models.js';
import { noWebGpu } from '../helpers/webgpu.js';

type Layer = { k: Float32Array; v: Float32Array };

/** Symmetric int8 with one fp16 scale per row of `hd` values, and the fp32 values it stands for. */
function int8Rows(x: Float32Array, hd: number): { q: Int8Array; scale: Uint16Array; exact: Float32Array } {
  const rows = x.length / hd;
  const q = new Int8Array(x.length);
  const scale = new Uint16Array(rows);
  const exact = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let i = 0; i < hd; i++) max = Math.max(max, Math.abs(x[r * hd + i]));
    scale[r] = float32ToFloat16Bits(max / 127);
    const s = float16BitsToFloat32(scale[r]);
    for (let i = 0; i < hd; i++) {
      q[r * hd + i] = s === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(x[r * hd + i] / s)));
      exact[r * hd + i] = q[r * hd + i] * s;
    }
  }
  return { q, scale, exact };
}

/** A source whose layers are stored in `form`; `reads` counts storedLayer calls per layer. */
function storedSource(
  tokenIds: number[],
  layers: Layer[],
  form: 'float32' | 'float16' | 'int8',
  hd: number,
  reads?: number[],
): { source: ChunkKvSource; exact: ChunkKvSource } {
  const stored: StoredKvLayer[] = layers.map(({ k, v }) => {
    if (form === 'float32') return { dtype: 'float32', k, v };
    if (form === 'float16')
      return { dtype: 'float16', k: float32ArrayToFloat16(k), v: float32ArrayToFloat16(v) };
    const [qk, qv] = [int8Rows(k, hd), int8Rows(v, hd)];
    return { dtype: 'int8', k: qk.q, v: qv.q, kScale: qk.scale, vScale: qv.scale };
  });
  const exactLayers: Layer[] = stored.map((s) => {
    if (s.dtype === 'float32') return { k: s.k, v: s.v };
    if (s.dtype === 'float16') return { k: float16ArrayToFloat32(s.k), v: float16ArrayToFloat32(s.v) };
    const widen = (q: Int8Array, sc: Uint16Array) =>
      Float32Array.from(q, (x, i) => x * float16BitsToFloat32(sc[Math.floor(i / hd)]));
    return { k: widen(s.k, s.kScale), v: widen(s.v, s.vScale) };
  });
  return {
    source: {
      tokenIds,
      layer: async (l) => exactLayers[l],
      storedLayer: async (l) => {
        if (reads) reads[l]++;
        return stored[l];
      },
    },
    exact: { tokenIds, layer: async (l) => exactLayers[l] },
  };
}

describe.skipIf(noWebGpu)('chunk caches reaching the device (skipped without a WebGPU adapter)', () => {
  let gpu: Engine;
  const chunks: { ids: number[]; layers: Layer[] }[][] = [];
  const questions: number[][] = [];
  const blend: BlendOptions = { mode: 'blend', ratio: 0.3, selection: 'deviation', checkLayer: 1 };

  beforeAll(async () => {
    const model = await loadLlama2cModel(STORIES_DIR);
    gpu = await Engine.create(model, { executionProvider: 'webgpu' });
    const tok = model.tokenizer;
    for (const s of STORY_SETS.slice(0, 3)) {
      const ids = s.chunks.map((c) => tok.encode(c));
      const data = await precomputeChunks(gpu, ids);
      chunks.push(
        data.map((d, i) => ({
          ids: ids[i],
          layers: d.keys.map((k, l) => ({
            k: k instanceof Float32Array ? k : float16ArrayToFloat32(k),
            v: ((x) => (x instanceof Float32Array ? x : float16ArrayToFloat32(x)))(d.values[l]),
          })),
        })),
      );
      questions.push(tok.encode(s.question));
    }
  });
  afterAll(async () => {
    setDevicePipelineLayers(4);
    await gpu?.dispose();
  });

  async function answer(sources: ChunkKvSource[], q: number[], o: BlendOptions) {
    const { cache, prefill } = await blendPrefill(gpu, sources, q, o, 8);
    const { tokens } = await decode(gpu, cache, prefill.firstTokenLogits, { maxTokens: 8, stopAtEos: false });
    releaseCache(cache);
    return { logits: prefill.firstTokenLogits, tokens, uploaded: prefill.timings.uploadedBytes ?? -1 };
  }

  const hd = () => gpu.config.headDim;

  for (const form of ['float16', 'int8'] as const) {
    it(`${form} layers uploaded as stored answer as their values in fp32 do (1e-5, 8 tokens)`, async () => {
      for (const [s, set] of chunks.entries()) {
        const made = set.map((c) => storedSource(c.ids, c.layers, form, hd()));
        for (const o of [blend, { mode: 'reuse' } as BlendOptions]) {
          const a = await answer(
            made.map((m) => m.exact),
            questions[s],
            o,
          );
          const b = await answer(
            made.map((m) => m.source),
            questions[s],
            o,
          );
          expect(maxAbsDiff(a.logits, b.logits)).toBeLessThan(1e-5);
          expect(b.tokens).toEqual(a.tokens);
          // fp32 values as fp32 cross at 4 bytes a value; fp16 at 2; int8 at 1 plus a scale per row.
          expect(b.uploaded).toBeLessThan(form === 'float16' ? a.uploaded / 1.9 : a.uploaded / 3);
        }
      }
    });
  }

  it('the pipeline reads each layer once and answers the same for any group size (1e-6)', async () => {
    const L = gpu.config.numLayers;
    const results = [];
    for (const group of [1, 2, L]) {
      setDevicePipelineLayers(group);
      const reads = Array<number>(L).fill(0);
      const made = chunks[0].map((c) => storedSource(c.ids, c.layers, 'float16', hd(), reads));
      results.push(
        await answer(
          made.map((m) => m.source),
          questions[0],
          blend,
        ),
      );
      // Layers below the check layer are never read by a blend without a GPU tier to fill.
      expect(reads).toEqual(reads.map((_, l) => (l < 1 ? 0 : made.length)));
    }
    setDevicePipelineLayers(4);
    for (const r of results.slice(1)) {
      expect(maxAbsDiff(r.logits, results[0].logits)).toBeLessThan(1e-6);
      expect(r.tokens).toEqual(results[0].tokens);
    }
  });

  it('a GPU tier keeps what a request uploaded; hits upload nothing and answer the same (1e-6)', async () => {
    const tier = new DeviceChunkTier(1 << 30);
    const made = chunks[1].map((c) => storedSource(c.ids, c.layers, 'float16', hd()));
    const sources = (useTier: boolean, only?: number) =>
      made.map((m, i) => ({
        ...m.source,
        ...(useTier && (only === undefined || only === i) ? { device: tier.get(`c${i}`) } : {}),
        keepOnDevice: (c: Parameters<NonNullable<ChunkKvSource['keepOnDevice']>>[0]) => tier.put(`c${i}`, c),
      }));
    const cold = await answer(sources(false), questions[1], blend);
    // The layers below the check layer, which the blend never read, follow the answer into the tier.
    for (let t = 0; t < 100 && tier.size < made.length; t++) await new Promise((r) => setTimeout(r, 50));
    expect(tier.size).toBe(made.length);
    const hot = await answer(sources(true), questions[1], blend);
    const mixed = await answer(sources(true, 0), questions[1], blend);
    expect(hot.uploaded).toBe(0);
    expect(mixed.uploaded).toBeGreaterThan(0);
    for (const r of [hot, mixed]) {
      expect(maxAbsDiff(r.logits, cold.logits)).toBeLessThan(1e-6);
      expect(r.tokens).toEqual(cold.tokens);
    }
    const reuse = await answer(sources(true), questions[1], { mode: 'reuse' });
    const reuseCold = await answer(sources(false), questions[1], { mode: 'reuse' });
    expect(maxAbsDiff(reuse.logits, reuseCold.logits)).toBeLessThan(1e-6);
    tier.clear();
  });

  it('a GPU-tier chunk evicted mid-request stays allocated until the prefill is done; one freed before it is read from the host', async () => {
    const tier = new DeviceChunkTier(1 << 30);
    const made = chunks[2].map((c) => storedSource(c.ids, c.layers, 'float16', hd()));
    const keep = (i: number) => (c: Parameters<NonNullable<ChunkKvSource['keepOnDevice']>>[0]) =>
      tier.put(`c${i}`, c);
    const cold = await answer(
      made.map((m, i) => ({ ...m.source, keepOnDevice: keep(i) })),
      questions[2],
      blend,
    );
    for (let t = 0; t < 100 && tier.size < made.length; t++) await new Promise((r) => setTimeout(r, 50));
    expect(tier.size).toBe(made.length);
    // Chunk 0 from the tier; the first host read of chunk 1 empties the tier before chunk 0 is assembled.
    let cleared = false;
    const evicting = made.map((m, i): ChunkKvSource => {
      if (i === 0) return { ...m.source, device: tier.get('c0') };
      if (i > 1) return m.source;
      return {
        ...m.source,
        storedLayer: async (l) => {
          if (!cleared) tier.clear();
          cleared = true;
          return m.source.storedLayer!(l);
        },
      };
    });
    const during = await answer(evicting, questions[2], blend);
    expect(cleared).toBe(true);
    // A chunk the tier freed after the request opened it and before its prefill: read from the host.
    const stale = await answer(
      made.map((m) => m.source),
      questions[2],
      blend,
    ).then(async () => {
      const cold2 = made.map((m, i) => ({ ...m.source, keepOnDevice: keep(i) }));
      await answer(cold2, questions[2], blend);
      for (let t = 0; t < 100 && tier.size < made.length; t++) await new Promise((r) => setTimeout(r, 50));
      const opened = made.map((m, i) => ({ ...m.source, device: tier.get(`c${i}`) }));
      tier.clear();
      return answer(opened, questions[2], blend);
    });
    expect(stale.uploaded).toBeGreaterThan(0);
    for (const r of [during, stale]) {
      expect(maxAbsDiff(r.logits, cold.logits)).toBeLessThan(1e-6);
      expect(r.tokens).toEqual(cold.tokens);
    }
  });

  it('chunks stored in different forms in one request are widened together (1e-5)', async () => {
    const set = chunks[2];
    const mixed = set.map((c, i) => storedSource(c.ids, c.layers, i % 2 ? 'float16' : 'float32', hd()));
    const a = await answer(
      mixed.map((m) => m.exact),
      questions[2],
      blend,
    );
    const b = await answer(
      mixed.map((m) => m.source),
      questions[2],
      blend,
    );
    expect(maxAbsDiff(a.logits, b.logits)).toBeLessThan(1e-5);
    expect(b.tokens).toEqual(a.tokens);
  });
});
