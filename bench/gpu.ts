import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { precomputeChunks, tokenIdsOnly } from '../core/blend/index.js';
import { DeviceChunkTier } from '../core/cache/device-tier.js';
import { loadBenchSettings } from '../core/config/bench.js';
import { DEFAULT_DECODE_BURST, Engine, type EngineOptions } from '../core/model/engine.js';
import type { DeviceDtype, SelectiveAttention } from '../core/model/device/graphs/index.js';
import { createRandomModel, LLAMA_100M, parameterCount } from '../core/model/random.js';
import { barChart, machine, median, printTable, writeResult } from './common.js';
import { card } from './gpu-card.js';
import {
  blendTtfts,
  decodedLayers,
  decodeStepsMs,
  decodeTokPerS,
  precomputeTokPerS,
  tierSources,
  ttft,
  workload,
} from './gpu-measure.js';

/**
 * GPU benchmark (`npm run bench:gpu`): the device-resident WebGPU engine on the 124.7M random Llama of
 * bench:ttft, against PyTorch + transformers on the same card (bench/torch_anchor.py, when python3 has
 * torch and transformers). Writes bench/results/gpu.json and gpu.svg.
 *
 * BENCH_DTYPES (default float16,float32: the service default first) lists the device precisions measured, each optionally with an
 * attention kernel (`float32:decomposed`); the first is reported as the headline. BENCH_REPS (default 5) repetitions, medians. BENCH_PROFILE=1 adds onnxruntime's per-op
 * profile of one prefill and one decode step.
 */

// `npm run bench:gpu -- multi`: one precompute worker per GPU (bench/multi-gpu.ts).
if (process.argv.includes('multi')) {
  await import('./multi-gpu.js');
  process.exit(0);
}
// `npm run bench:gpu -- upload`: the host→GPU rate of onnxruntime's WebGPU provider (bench/upload-rate.ts).
if (process.argv.includes('upload')) {
  await import('./upload-rate.js');
  process.exit(0);
}
// `npm run bench:gpu -- scale`: the real-size run instead (bench/gpu-scale.ts).
if (process.argv.includes('scale')) {
  await import('./gpu-scale.js');
  process.exit(0);
}

const settings = loadBenchSettings();
const reps = settings.repsGiven ?? 5;
// Entries `dtype[:attention]`; attention defaults to the engine's own choice (fused where it checks out).
// Entries `dtype[:attention[:selective[:flags]]]`, empty fields for the engine's own choice; flags
// (`+`-separated): `novalidate` turns Dawn's validation off, `pending256` lets 256 dispatches queue.
const variants = settings.gpuVariants.map((v) => {
  const [dtype, a, sel, flags = ''] = v.split(':');
  return {
    dtype: dtype as DeviceDtype,
    attention: (a || undefined) as 'fused' | 'decomposed' | undefined,
    selective: (sel || undefined) as SelectiveAttention | undefined,
    flags: flags.split('+').filter(Boolean),
  };
});

type Variant = (typeof variants)[number];

function variantOptions(v: Variant): EngineOptions {
  const ep = v.flags.includes('novalidate') ? { name: 'webgpu', validationMode: 'disabled' } : 'webgpu';
  const pending = v.flags.includes('pending256')
    ? { extra: { ep: { webgpuexecutionprovider: { maxNumPendingDispatches: '256' } } } }
    : {};
  return {
    executionProvider: 'webgpu',
    deviceDtype: v.dtype,
    deviceAttention: v.attention,
    deviceSelectiveAttention: v.selective,
    sessionOptions: { executionProviders: [ep as 'webgpu'], ...pending },
  };
}
const PRECOMPUTE_BATCH = settings.precomputeBatch;
const DECODE_BURST = DEFAULT_DECODE_BURST;

// BENCH_SHAPE (JSON, e.g. a tiny shape for a smoke run on a software adapter) overrides the model shape.
const SHAPE = {
  ...LLAMA_100M,
  ...(settings.shape as Partial<typeof LLAMA_100M>),
};
const model = createRandomModel(SHAPE);
const work = workload(model.config.vocabSize, model.config.bosTokenId, {
  reps,
  precomputeBatch: PRECOMPUTE_BATCH,
});
const { chunkIds, ratio: RATIO } = work;

interface OpRow {
  op: string;
  ms: number;
  count: number;
}

/**
 * Aggregate onnxruntime profile files (prefix) by op type: host-side time (`Node` events: the kernel's
 * dispatch on the JavaScript side's thread) and GPU time (`Api` events: the WebGPU provider's timestamp
 * queries around each program it dispatches), each with its count.
 */
function opProfile(prefix: string): { host: OpRow[]; gpu: OpRow[] } {
  const host = new Map<string, { ms: number; count: number }>();
  const gpu = new Map<string, { ms: number; count: number }>();
  const add = (m: typeof host, op: string, ms: number) => {
    const cur = m.get(op) ?? { ms: 0, count: 0 };
    cur.ms += ms;
    cur.count += 1;
    m.set(op, cur);
  };
  for (const f of readdirSync('.').filter((n) => n.startsWith(prefix) && n.endsWith('.json'))) {
    let events: { cat: string; name: string; dur: number; args?: { op_name?: string } }[] = [];
    try {
      events = JSON.parse(readFileSync(f, 'utf8'));
    } catch {
      // a session still profiling has not finished its file; its phase is not this one
    }
    for (const e of events) {
      if (e.cat === 'Node' && e.args?.op_name) add(host, e.args.op_name, e.dur / 1000);
      // Api names read `node&op&program`.
      if (e.cat === 'Api') add(gpu, e.name.split('&').slice(1).join('/'), e.dur / 1000);
    }
    rmSync(f);
  }
  const rows = (m: typeof host) =>
    [...m.entries()].map(([op, v]) => ({ op, ...v })).sort((a, b) => b.ms - a.ms);
  return { host: rows(host), gpu: rows(gpu) };
}

async function measure(v: Variant) {
  const dtype = v.dtype;
  const engine = await Engine.create(model, variantOptions(v));
  const { fullMs, missMs, hitMs } = await blendTtfts(work, engine);
  const decodeSteps = await decodeStepsMs(work, engine, 2048, 32);
  const decodeBurst = await decodeTokPerS(work, engine, 2048, 64);
  const precompute = await precomputeTokPerS(work, engine);
  const attention = [engine.device!.attention, engine.device!.selective, ...v.flags].join(', ');
  await engine.dispose();
  const row = {
    dtype,
    attention,
    fullPrefill4x512Ms: fullMs.ms,
    fullPrefillAllMs: fullMs.all,
    blendMissMs: missMs.ms,
    blendMissSteps: missMs.steps,
    blendHitMs: hitMs.ms,
    blendHitSteps: hitMs.steps,
    decode2048TokPerS: decodeBurst,
    decode2048SingleStepTokPerS: 1000 / median(decodeSteps.slice(2)),
    decodeStepMs: decodeSteps,
    precomputeTokPerS: precompute.tokPerS,
    precomputeMs: precompute.ms,
    precomputeComputeTokPerS: precompute.computeTokPerS,
    precomputeComputeMs: precompute.computeMs,
    precomputeStoredTokPerS: precompute.storedTokPerS,
    precomputeStoredMs: precompute.storedMs,
  };
  console.error(
    `  blend steps (ms): miss ${JSON.stringify(row.blendMissSteps)}, hit ${JSON.stringify(row.blendHitSteps)}`,
  );
  console.error(
    `  ${dtype} (${attention}): full ${row.fullPrefill4x512Ms.toFixed(1)} ms, blend ${row.blendMissMs.toFixed(1)} / ${row.blendHitMs.toFixed(1)} ms (miss / hit), decode ${row.decode2048TokPerS.toFixed(0)} tok/s (bursts; ${row.decode2048SingleStepTokPerS.toFixed(0)} token by token), precompute ${row.precomputeTokPerS.toFixed(0)} / ${row.precomputeComputeTokPerS.toFixed(0)} / ${row.precomputeStoredTokPerS.toFixed(0)} tok/s (to host / compute / stored objects)`,
  );
  return row;
}

/**
 * onnxruntime's profile of each phase on an engine of its own (profiling ends with a session, so each
 * phase's sessions are new when it starts; the shaders were compiled by the measured runs before).
 * prefill: reps full prefills; blend: reps blends, the first a GPU-tier miss, the rest hits; decode: a
 * 2,048-token prefill and 40 steps. Walls are of the whole phase, profiling on.
 */
async function profile(dtype: DeviceDtype) {
  const prefix = `cacheblend-profile-${process.pid}`;
  const engine = await Engine.create(model, {
    executionProvider: 'webgpu',
    deviceDtype: dtype,
    sessionOptions: { enableProfiling: true, profileFilePrefix: prefix },
  });
  const phase = async (f: () => Promise<unknown>) => {
    const t0 = performance.now();
    await f();
    const wallMs = performance.now() - t0;
    await engine.device!.endProfiling();
    return { wallMs, ...opProfile(prefix) };
  };
  const prefill = await phase(() => ttft(work, engine, () => chunkIds.map(tokenIdsOnly), { mode: 'full' }));
  const data = (await precomputeChunks(engine, chunkIds)).map(decodedLayers);
  opProfile(prefix);
  const tier = new DeviceChunkTier(2 * 1024 ** 3);
  const blend = await phase(() =>
    ttft(work, engine, () => tierSources(tier, data), {
      mode: 'blend',
      ratio: RATIO,
      selection: 'deviation',
    }),
  );
  tier.clear();
  const decode = await phase(() => decodeStepsMs(work, engine, 2048, 40));
  await engine.dispose();
  return { dtype, prefill, blend, decode };
}

interface TorchAnchor {
  card?: string;
  fullPrefill4x512Fp32Ms?: number;
  fullPrefill4x512Bf16Ms?: number;
  decode2048Fp32TokPerS?: number;
  precomputeFp32TokPerS?: number;
  precomputeBf16TokPerS?: number;
  error?: string;
}

function torchAnchor(): TorchAnchor {
  const script = fileURLToPath(new URL('../../bench/torch_anchor.py', import.meta.url));
  if (!existsSync(script)) return { error: `missing ${script}` };
  const r = spawnSync('python3', [script, '--reps', String(Math.max(reps, 5))], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) return { error: (r.stderr || r.error?.message || 'python3 failed').trim().slice(-400) };
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as TorchAnchor;
}

const cardName = card();
console.error(`gpu benchmark on ${cardName}: ${settings.gpuVariants.join(',')}`);
const rows: Awaited<ReturnType<typeof measure>>[] = [];
for (const v of variants) rows.push(await measure(v));
const profiles = settings.profile ? [await profile(variants[0].dtype)] : [];
const torch = settings.torch ? torchAnchor() : { error: 'skipped (BENCH_TORCH=0)' };
const head = rows[0];

const result = {
  card: cardName,
  machine: machine('webgpu'),
  model: { ...SHAPE, parameters: parameterCount(model) },
  dtype: head.dtype,
  fullPrefill4x512: {
    ms: head.fullPrefill4x512Ms,
    torchFp32Ms: torch.fullPrefill4x512Fp32Ms ?? null,
    torchBf16Ms: torch.fullPrefill4x512Bf16Ms ?? null,
  },
  // ms: chunk caches in host RAM, uploaded for the query (a GPU-tier miss); hitMs: already in GPU memory.
  blendTtft4x512: {
    ms: head.blendMissMs,
    ratioToFull: head.blendMissMs / head.fullPrefill4x512Ms,
    hitMs: head.blendHitMs,
    hitRatioToFull: head.blendHitMs / head.fullPrefill4x512Ms,
    ratio: RATIO,
    steps: { miss: head.blendMissSteps, hit: head.blendHitSteps },
  },
  // tokPerS: greedy decoding as the service runs it (bursts, argmax on the GPU); singleStepTokPerS: one
  // token per run with its logits back on the host (sampling with a temperature decodes this way).
  decode2048: {
    tokPerS: head.decode2048TokPerS,
    singleStepTokPerS: head.decode2048SingleStepTokPerS,
    burst: DECODE_BURST,
    torchFp32TokPerS: torch.decode2048Fp32TokPerS ?? null,
  },
  // tokPerS: K/V back on the host; computeTokPerS: the batch's prefill alone; storedTokPerS: encoded
  // fp16 objects, what a precompute worker writes to the store.
  precompute: {
    tokPerS: head.precomputeTokPerS,
    computeTokPerS: head.precomputeComputeTokPerS,
    storedTokPerS: head.precomputeStoredTokPerS,
    batch: PRECOMPUTE_BATCH,
    chunkTokens: work.chunk,
    torchBf16TokPerS: torch.precomputeBf16TokPerS ?? null,
    torchFp32TokPerS: torch.precomputeFp32TokPerS ?? null,
  },
  torch,
  rows,
  profiles,
};
printTable(
  [
    'dtype',
    'attention',
    'full 4x512 ms',
    'blend miss ms',
    'blend hit ms',
    'hit / full',
    'decode@2048 tok/s (burst / single)',
    'precompute tok/s (to host / compute / stored)',
  ],
  rows.map((r) => [
    r.dtype,
    r.attention,
    r.fullPrefill4x512Ms,
    r.blendMissMs,
    r.blendHitMs,
    r.blendHitMs / r.fullPrefill4x512Ms,
    `${r.decode2048TokPerS.toFixed(0)} / ${r.decode2048SingleStepTokPerS.toFixed(0)}`,
    `${r.precomputeTokPerS.toFixed(0)} / ${r.precomputeComputeTokPerS.toFixed(0)} / ${r.precomputeStoredTokPerS.toFixed(0)}`,
  ]),
);
for (const r of rows)
  console.log(
    `${r.dtype} blend steps (ms): miss ${JSON.stringify(r.blendMissSteps)}, hit ${JSON.stringify(r.blendHitSteps)}`,
  );
if (!torch.error) {
  printTable(
    ['PyTorch', 'prefill fp32 ms', 'prefill bf16 ms', 'decode fp32 tok/s', 'precompute bf16 tok/s'],
    [
      [
        torch.card ?? '',
        torch.fullPrefill4x512Fp32Ms ?? '',
        torch.fullPrefill4x512Bf16Ms ?? '',
        torch.decode2048Fp32TokPerS ?? '',
        torch.precomputeBf16TokPerS ?? '',
      ],
    ],
  );
} else console.log(`PyTorch anchor: ${torch.error}`);
for (const p of profiles) {
  for (const phase of ['prefill', 'blend', 'decode'] as const) {
    const sum = (rows: OpRow[]) => rows.reduce((a, r) => a + r.ms, 0);
    const count = (rows: OpRow[]) => rows.reduce((a, r) => a + r.count, 0);
    const { host, gpu } = p[phase];
    console.log(
      `profile (${p.dtype}, ${phase}): wall ${p[phase].wallMs.toFixed(1)} ms (reps ${reps}), host kernels ${sum(host).toFixed(1)} ms / ${count(host)}, GPU programs ${sum(gpu).toFixed(1)} ms / ${count(gpu)}`,
    );
    printTable(
      ['host op', 'ms', 'count', 'GPU program', 'ms', 'count'],
      Array.from({ length: 14 }, (_, i) => [
        host[i]?.op ?? '',
        host[i]?.ms ?? '',
        host[i]?.count ?? '',
        gpu[i]?.op ?? '',
        gpu[i]?.ms ?? '',
        gpu[i]?.count ?? '',
      ]),
    );
  }
}
console.log(`wrote ${writeResult('gpu.json', result)}`);
console.log(`wrote ${writeResult('gpu.svg', chart())}`);

/** Each measurement as a multiple of PyTorch fp32's speed on the same card (1 = as fast; higher is faster). */
function chart(): string {
  const bars: { label: string; value: number; group: string }[] = [];
  for (const r of rows) {
    const g = `${r.dtype}`;
    if (torch.fullPrefill4x512Fp32Ms) {
      bars.push({
        label: `${g} full prefill 4x512`,
        value: torch.fullPrefill4x512Fp32Ms / r.fullPrefill4x512Ms,
        group: g,
      });
      bars.push({
        label: `${g} blend 0.15, GPU-tier hit`,
        value: torch.fullPrefill4x512Fp32Ms / r.blendHitMs,
        group: g,
      });
    }
    if (torch.decode2048Fp32TokPerS) {
      bars.push({
        label: `${g} decode @2048`,
        value: r.decode2048TokPerS / torch.decode2048Fp32TokPerS,
        group: g,
      });
    }
    if (torch.precomputeFp32TokPerS) {
      bars.push({
        label: `${g} batched precompute`,
        value: r.precomputeComputeTokPerS / torch.precomputeFp32TokPerS,
        group: g,
      });
    }
  }
  if (torch.fullPrefill4x512Bf16Ms) {
    bars.push({
      label: 'PyTorch bf16 full prefill',
      value: torch.fullPrefill4x512Fp32Ms! / torch.fullPrefill4x512Bf16Ms,
      group: 'torch',
    });
  }
  return barChart({
    title: `WebGPU engine vs PyTorch fp32 (${cardName}); blend vs PyTorch's full prefill`,
    xLabel: 'speed relative to PyTorch fp32 (x)',
    bars,
    reference: { value: 1, label: 'PyTorch fp32' },
  });
}
