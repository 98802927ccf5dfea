import {
  asFloat32,
  blendPrefill,
  memorySource,
  precomputeChunks,
  tokenIdsOnly,
  type AttentionSource,
  type BlendOptions,
  type ChunkCacheData,
  type ChunkKvSource,
  type SelectionStrategy,
} from '../core/blend/index.js';
import { DeviceChunkTier } from '../core/cache/device-tier.js';
import { computeChunkObjects } from '../core/inference/chunk-objects.js';
import { releaseCache, type Engine } from '../core/model/engine.js';
import { decode, seededRandom } from '../core/model/generate.js';
import { median, timeMedian } from './common.js';

/**
 * The GPU benchmarks' measurements of one engine (bench:gpu and its scale run): time to first token of
 * full prefill and blend over 4 chunks of 512 tokens and a 32-token question, greedy decoding after 2,048
 * tokens, batched precompute. Random token ids; medians of `reps`.
 */
export interface Workload {
  reps: number;
  chunkIds: number[][];
  question: number[];
  bos: number;
  randomIds: (n: number) => number[];
  /** Chunks per batched precompute run, of `chunk` tokens each. */
  precomputeBatch: number;
  chunk: number;
  ratio: number;
}

export function workload(vocab: number, bos: number, o: { reps: number; precomputeBatch: number }): Workload {
  const rand = seededRandom(42);
  const randomIds = (n: number) => Array.from({ length: n }, () => 3 + Math.floor(rand() * (vocab - 3)));
  const chunk = 512;
  return {
    ...o,
    chunkIds: Array.from({ length: 4 }, () => randomIds(chunk)),
    question: randomIds(32),
    bos,
    randomIds,
    chunk,
    ratio: 0.15,
  };
}

/** TTFT of one mode (blendPrefill, as the blend worker runs it), medians of reps; step times of the last. */
export async function ttft(w: Workload, engine: Engine, sources: () => ChunkKvSource[], o: BlendOptions) {
  let steps: Record<string, number> = {};
  const t = await timeMedian(w.reps, async () => {
    const { cache, prefill } = await blendPrefill(engine, sources(), w.question, o);
    releaseCache(cache);
    steps = prefill.timings.steps ?? {};
  });
  return { ms: t.median, all: t.all, steps };
}

/**
 * A chunk's layers as the blend worker's loader hands them to the engine on a GPU-tier miss: decoded to
 * fp32 (a float16 device computes them as fp16 bits).
 */
export function decodedLayers(d: ChunkCacheData): ChunkCacheData {
  return { ...d, keys: d.keys.map(asFloat32), values: d.values.map(asFloat32) };
}

/** Chunk sources in front of a GPU tier, as the blend worker's loader builds them. */
export function tierSources(tier: DeviceChunkTier, data: ChunkCacheData[]): ChunkKvSource[] {
  return data.map((d, i) => ({
    ...memorySource(d),
    device: tier.get(`chunk${i}`),
    keepOnDevice: (c) => tier.put(`chunk${i}`, c),
  }));
}

/**
 * One blend that uploads every chunk, then the wait until the tier holds them all (the layers below the
 * check layer follow the answer): a request that starts before then finds the tier short and uploads
 * again, which a hit's timing must not include.
 */
async function fillTier(
  w: Workload,
  engine: Engine,
  tier: DeviceChunkTier,
  data: ChunkCacheData[],
  o: BlendOptions,
) {
  const { cache } = await blendPrefill(engine, tierSources(tier, data), w.question, o);
  releaseCache(cache);
  for (let t = 0; t < 600 && tier.size < data.length; t++) await new Promise((r) => setTimeout(r, 50));
}

export async function blendTtfts(w: Workload, engine: Engine) {
  const stored = await precomputeChunks(engine, w.chunkIds);
  const data = stored.map(decodedLayers);
  // CacheBlend's own selection, as the scale rows have always measured; selectionTtfts adds the others.
  const blend: BlendOptions = { mode: 'blend', ratio: w.ratio, selection: 'deviation' };
  const full = () => ttft(w, engine, () => w.chunkIds.map(tokenIdsOnly), { mode: 'full' });
  await full(); // warm-up: session creation and shader compilation stay out of the numbers
  const fullMs = await full();
  const miss = () => ttft(w, engine, () => data.map(memorySource), blend);
  await miss();
  const missMs = await miss();
  const tier = new DeviceChunkTier(2 * 1024 ** 3);
  await fillTier(w, engine, tier, data, blend);
  const hitMs = await ttft(w, engine, () => tierSources(tier, data), blend);
  tier.clear();
  return { fullMs, missMs, hitMs, stored };
}

/**
 * Blend TTFT of each selection (`strategy[:attention]`, BENCH_SCALE_SELECTIONS) on the workload: chunks
 * loaded from host memory (miss: read, uploaded, assembled) and from the GPU tier (hit), medians of reps,
 * with the last run's step times (the lookahead's among them) and the tokens it recomputed.
 */
export async function selectionTtfts(
  w: Workload,
  engine: Engine,
  stored: ChunkCacheData[],
  specs: readonly string[],
) {
  const data = stored.map(decodedLayers);
  const tier = new DeviceChunkTier(2 * 1024 ** 3);
  const rows = [];
  for (const spec of specs) {
    const [selection, attention] = spec.split(':') as [SelectionStrategy, AttentionSource | undefined];
    const o: BlendOptions = { mode: 'blend', ratio: w.ratio, selection, ...(attention && { attention }) };
    await ttft(w, engine, () => data.map(memorySource), o); // warm-up: this selection's graphs
    const miss = await ttft(w, engine, () => data.map(memorySource), o);
    await fillTier(w, engine, tier, data, o);
    const hit = await ttft(w, engine, () => tierSources(tier, data), o);
    tier.clear();
    rows.push({
      selection: spec,
      missMs: miss.ms,
      hitMs: hit.ms,
      missSteps: miss.steps,
      hitSteps: hit.steps,
    });
  }
  return rows;
}

export async function decodeStepsMs(
  w: Workload,
  engine: Engine,
  context: number,
  steps: number,
): Promise<number[]> {
  const cache = engine.newSequenceCache(context + steps);
  let logits = await engine.forward(cache, [w.bos, ...w.randomIds(context - 1)]);
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const next = logits.indexOf(Math.max(...logits));
    const t0 = performance.now();
    logits = await engine.forward(cache, [next]);
    times.push(performance.now() - t0);
  }
  if ('dispose' in cache) cache.dispose();
  return times;
}

/**
 * Greedy decoding as the service decodes (generate.ts `decode`: bursts of DEVICE_DECODE_BURST tokens per
 * GPU run, argmax on the GPU), after a `context`-token prefill: tokens per second over `tokens` tokens
 * after the first (which comes with the prefill), medians of reps.
 */
export async function decodeTokPerS(w: Workload, engine: Engine, context: number, tokens: number) {
  const prompt = [w.bos, ...w.randomIds(context - 1)];
  /** Tokens per second of one greedy answer's `tokens` tokens after the first (the prefill's). */
  const rate = async () => {
    const cache = engine.newSequenceCache(context + tokens + 1);
    const first = await engine.forward(cache, prompt);
    const t0 = performance.now();
    await decode(engine, cache, first, { maxTokens: tokens + 1, stopAtEos: false });
    const perS = (tokens / (performance.now() - t0)) * 1000;
    releaseCache(cache);
    return perS;
  };
  await rate(); // the burst graph's session and shaders
  const rates: number[] = [];
  for (let i = 0; i < Math.max(3, Math.ceil(w.reps / 2)); i++) rates.push(await rate());
  return median(rates);
}

/**
 * Batched precompute, chunk tokens per second: the batch's prefill alone (K/V left on the GPU, as the
 * PyTorch anchor measures), and with every chunk's K/V brought back to the host (what a worker stores).
 */
export async function precomputeTokPerS(w: Workload, engine: Engine) {
  const seqs = Array.from({ length: w.precomputeBatch }, () => [w.bos, ...w.randomIds(w.chunk)]);
  const device = engine.device!;
  const onDevice = async () => {
    const { k, v } = await device.prefillBatchOnDevice(seqs, true);
    for (const t of [...k, ...v]) t.dispose();
  };
  await onDevice();
  await device.prefillBatch(seqs);
  const n = Math.max(3, Math.ceil(w.reps / 2));
  const compute = await timeMedian(n, onDevice);
  const withHost = await timeMedian(n, () => device.prefillBatch(seqs));
  // What a precompute worker stores: the fp16 objects (KV_DTYPE's default), encoded.
  const chunks = seqs.map((s) => s.slice(1));
  await computeChunkObjects(engine, chunks, 'float16');
  const stored = await timeMedian(n, () => computeChunkObjects(engine, chunks, 'float16'));
  const tokens = w.precomputeBatch * w.chunk;
  return {
    tokPerS: (tokens / withHost.median) * 1000,
    computeTokPerS: (tokens / compute.median) * 1000,
    storedTokPerS: (tokens / stored.median) * 1000,
    ms: withHost.all,
    computeMs: compute.all,
    storedMs: stored.all,
  };
}
