import ort from 'onnxruntime-node';
import {
  buildStackGraph,
  intSegments,
  type SelectiveAttention,
  type StackGraphOptions,
} from './graphs/index.js';
import { hostWeightTensor } from './weights.js';
import { createSession } from '../onnx/session.js';
import type { LoadedModel } from '../types.js';
import { int64, packInts, range, selectiveInts, type Feeds, type Ints } from './ints.js';
import { DeviceRunner } from './runner.js';

type AttentionChoice = Pick<StackGraphOptions, 'attention' | 'selective'>;

/**
 * Largest difference between two attention variants of one stack (layer 0) on the same feeds; Infinity
 * when a variant does not run here.
 */
async function variantDifference(
  model: LoadedModel,
  sessionOptions: ort.InferenceSession.SessionOptions,
  cache: StackGraphOptions['cache'],
  variants: [AttentionChoice, AttentionChoice],
  feeds: Feeds,
  ints: (v: AttentionChoice) => Ints,
): Promise<number> {
  const outputs: Float32Array[] = [];
  for (const variant of variants) {
    try {
      outputs.push(await runVariant(model, sessionOptions, cache, variant, feeds, ints(variant)));
    } catch {
      return Infinity;
    }
  }
  let worst = 0;
  for (let i = 0; i < outputs[0].length; i++)
    worst = Math.max(worst, Math.abs(outputs[0][i] - outputs[1][i]));
  return worst;
}

async function runVariant(
  model: LoadedModel,
  sessionOptions: ort.InferenceSession.SessionOptions,
  cache: StackGraphOptions['cache'],
  variant: AttentionChoice,
  feeds: Feeds,
  ints: Ints,
): Promise<Float32Array> {
  const options: StackGraphOptions = {
    from: 0,
    to: 1,
    dtype: 'float32',
    cache,
    input: 'rows',
    head: false,
    emitHidden: true,
    ...variant,
  };
  const graph = buildStackGraph(model.config, model.weights, options);
  const session = await createSession(graph.model, sessionOptions);
  try {
    const all = { ...feeds, ...packInts(intSegments(options), ints) };
    for (const w of graph.weights) all[w.name] = hostWeightTensor(w);
    const used = Object.fromEntries(session.inputNames.map((n) => [n, all[n]]));
    return (await session.run(used)).hidden.data as Float32Array;
  } finally {
    await session.release();
  }
}

/**
 * Which attention kernels to use on this adapter: onnxruntime's fused ones (GroupQueryAttention for causal
 * runs; for blend's selective layers GroupQueryAttention with a bias, else MultiHeadAttention) where they
 * compute what the decomposed graphs compute, on layer 0 of the model, else the decomposed graphs. Fused
 * kernels were seen wrong on Mesa's software Vulkan (lavapipe) from 32 tokens on, so the engine checks
 * once at start instead of trusting them.
 */
export async function chooseAttention(
  model: LoadedModel,
  sessionOptions: ort.InferenceSession.SessionOptions,
): Promise<{ attention: 'fused' | 'decomposed'; selective: SelectiveAttention }> {
  const { hiddenSize: D, numKvHeads: KV, headDim: hd } = model.config;
  const T = 48;
  const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));
  const causal = await variantDifference(
    model,
    sessionOptions,
    'none',
    [{ attention: 'fused' }, { attention: 'decomposed' }],
    {
      hidden_in: new ort.Tensor('float32', wave(T * D, 0.37), [1, T, D]),
      pos_ids: int64(range(0, T), [1, T]),
      ...DeviceRunner.lengths(1, T),
    },
    () => ({ rows: range(0, T), q_pos: range(0, T), k_pos: range(0, T) }),
  );
  // Blend's shape: every third of 96 cached rows and the last 8 recomputed, attending over all 96.
  const N = 96;
  const active = Int32Array.from(range(0, N).filter((p) => p % 3 === 1 || p >= N - 8));
  const A = active.length;
  const feeds: Feeds = {
    hidden_in: new ort.Tensor('float32', wave(A * D, 0.29), [1, A, D]),
    pos_ids: int64(active, [1, A]),
    ...DeviceRunner.lengths(1, N + A),
    cache_k_0: new ort.Tensor('float32', wave(KV * N * hd, 0.11), [1, KV, N, hd]),
    cache_v_0: new ort.Tensor('float32', wave(KV * N * hd, 0.07), [1, KV, N, hd]),
  };
  const ints = (v: AttentionChoice) => ({ rows: range(0, A), ...selectiveInts(active, N, v.selective!) });
  let selective: SelectiveAttention = 'decomposed';
  for (const fused of ['mha', 'gqa'] as const) {
    const d = await variantDifference(
      model,
      sessionOptions,
      'scatter',
      [{ selective: fused }, { selective: 'decomposed' }],
      feeds,
      ints,
    );
    if (d <= 1e-3) {
      selective = fused;
      break;
    }
  }
  return { attention: causal <= 1e-3 ? 'fused' : 'decomposed', selective };
}
