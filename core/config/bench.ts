/**
 * Settings of the benchmark scripts (bench/), from the environment like the service's (index.ts), parsed
 * once with zod; a bad value fails naming the variable.
 *
 * | Variable        | Default                          | Notes                                          |
 * | --------------- | -------------------------------- | ---------------------------------------------- |
 * | ORT_EP          | cpu                              | execution provider: cpu, webgpu, cuda          |
 * | BENCH_REPS      | 3                                | repetitions; medians are reported              |
 * | BENCH_CONTEXTS  | 4x256,4x512,8x256,8x512          | bench:ttft contexts, chunks x tokens per chunk |
 * | STORIES_DIR     | <repo>/models/stories260K        | the stories260K folder                         |
 * | BENCH_LOAD_SECONDS | 15                            | bench:load: seconds per load phase             |
 * | BENCH_LOAD_CONCURRENCY | 8,64                      | bench:load: concurrent clients per phase       |
 * | BENCH_LOAD_QUEUE_LIMIT | 16                        | bench:load: QUERY_QUEUE_LIMIT of the service   |
 * | BENCH_DTYPES    | float16,float32                  | bench:gpu: device precisions (`dtype[:attention[:selective[:flags]]]`) |
 * | BENCH_PRECOMPUTE_BATCH | 64                        | bench:gpu: chunks per precompute batch         |
 * | BENCH_SHAPE     | (the 124.7M shape)               | bench:gpu: JSON overriding the model shape     |
 * | BENCH_PROFILE   | false                            | bench:gpu: add onnxruntime's per-op profile    |
 * | BENCH_TORCH     | true                             | bench:gpu: run the PyTorch anchor              |
 * | BENCH_SCALE_SHAPES | 125M,1B,8B                    | bench:gpu scale: shapes (checkpoints made by transformers) |
 * | BENCH_SCALE_WEIGHTS | fp16,q4                      | bench:gpu scale: weight formats per shape      |
 * | BENCH_SCALE_DIR | <tmp>/cacheblend-scale           | bench:gpu scale: where the checkpoints are written |
 * | BENCH_SCALE_BATCH | 16                             | bench:gpu scale: chunks per precompute batch   |
 * | BENCH_SCALE_SELECTIONS | (none)                    | bench:gpu scale: blend TTFT per selection, e.g. deviation,question,combined,fused,combined:check |
 * | BENCH_WEIGHTS   | fp32,q4                          | bench:ttft: weight formats of the CPU rows     |
 * | DISPATCH_OPS    | 200                              | bench webgpu-dispatch: kernels per run         |
 *
 * BENCH_REPS unset leaves each script its own default (3; bench:gpu 5, webgpu-dispatch 20).
 */
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { projectRoot } from '../util/fs.js';
import type { ExecutionProvider } from './index.js';
import type { WeightFormat } from '../model/weights/format.js';

export interface BenchSettings {
  readonly executionProvider: ExecutionProvider;
  /** BENCH_REPS, or 3 when unset. */
  readonly reps: number;
  /** BENCH_REPS as given, null when unset (scripts with another default). */
  readonly repsGiven: number | null;
  readonly contexts: readonly { readonly chunks: number; readonly tokens: number }[];
  readonly storiesDir: string;
  readonly loadSeconds: number;
  readonly loadConcurrency: readonly number[];
  readonly loadQueueLimit: number;
  readonly gpuVariants: readonly string[];
  readonly precomputeBatch: number;
  readonly shape: Readonly<Record<string, number>>;
  readonly profile: boolean;
  readonly torch: boolean;
  readonly dispatchOps: number;
  readonly scaleShapes: readonly string[];
  readonly scaleWeights: readonly WeightFormat[];
  readonly scaleDir: string;
  readonly scaleBatch: number;
  /** Selections (`strategy[:attention]`) whose blend TTFT the scale run adds per shape; none by default. */
  readonly scaleSelections: readonly string[];
  readonly ttftWeights: readonly WeightFormat[];
}

const formats = (fallback: string) =>
  z
    .string()
    .regex(/^(fp32|fp16|q4|q8)(,(fp32|fp16|q4|q8))*$/, 'must list weight formats, e.g. fp16,q4')
    .default(fallback);

const whole = (max: number) =>
  z
    .string()
    .regex(/^[1-9]\d*$/, `must be a whole number from 1 to ${max}`)
    .transform(Number)
    .pipe(z.number().max(max, `must be a whole number from 1 to ${max}`));

const flag = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0'], { error: 'must be one of true, false, 1, 0' })
    .transform((v) => v === 'true' || v === '1')
    .default(fallback);

const BenchEnv = z.object({
  ORT_EP: z.enum(['cpu', 'webgpu', 'cuda'], { error: 'must be one of cpu, webgpu, cuda' }).default('cpu'),
  BENCH_REPS: whole(9999).optional(),
  BENCH_CONTEXTS: z
    .string()
    .regex(/^\d+x\d+(,\d+x\d+)*$/, 'must be a comma-separated list like 4x512,8x256')
    .default('4x256,4x512,8x256,8x512'),
  STORIES_DIR: z.string().optional(),
  BENCH_LOAD_SECONDS: z
    .string()
    .regex(/^[1-9]\d{0,3}$/, 'must be a whole number from 1 to 9999')
    .transform(Number)
    .default(15),
  BENCH_LOAD_CONCURRENCY: z
    .string()
    .regex(/^[1-9]\d{0,3}(,[1-9]\d{0,3})*$/, 'must be a comma-separated list like 8,64')
    .default('8,64'),
  BENCH_LOAD_QUEUE_LIMIT: z
    .string()
    .regex(/^[1-9]\d{0,5}$/, 'must be a whole number from 1 to 999999')
    .transform(Number)
    .default(16),
  BENCH_DTYPES: z
    .string()
    .regex(
      /^(float16|float32)(:[\w+]*)*(,(float16|float32)(:[\w+]*)*)*$/,
      'must list float16/float32 variants, e.g. float16,float32:decomposed',
    )
    .default('float16,float32'),
  BENCH_PRECOMPUTE_BATCH: whole(4096).default(64),
  BENCH_SHAPE: z
    .string()
    .refine((v) => {
      try {
        const o = JSON.parse(v) as unknown;
        return typeof o === 'object' && o !== null && Object.values(o).every((x) => typeof x === 'number');
      } catch {
        return false;
      }
    }, 'must be a JSON object of numbers, e.g. {"numLayers": 2}')
    .optional(),
  BENCH_PROFILE: flag(false),
  BENCH_TORCH: flag(true),
  DISPATCH_OPS: whole(100_000).default(200),
  BENCH_SCALE_SHAPES: z
    .string()
    .regex(/^(125M|1B|8B)(,(125M|1B|8B))*$/, 'must list shapes of 125M, 1B, 8B')
    .default('125M,1B,8B'),
  BENCH_SCALE_WEIGHTS: formats('fp16,q4'),
  BENCH_SCALE_DIR: z.string().optional(),
  BENCH_SCALE_BATCH: whole(4096).default(16),
  BENCH_SCALE_SELECTIONS: z
    .string()
    .regex(
      /^(deviation|question|combined|fused)(:(check|lookahead))?(,(deviation|question|combined|fused)(:(check|lookahead))?)*$/,
      'must list selections as strategy[:attention], e.g. deviation,question,combined:check,fused',
    )
    .optional(),
  BENCH_WEIGHTS: formats('fp32,q4'),
});

/** Names of the variables loadBenchSettings reads. */
export const BENCH_VARIABLES: readonly string[] = Object.freeze(Object.keys(BenchEnv.shape));

export function loadBenchSettings(env: Record<string, string | undefined> = process.env): BenchSettings {
  const raw = Object.fromEntries(BENCH_VARIABLES.map((k) => [k, env[k]?.trim() || undefined]));
  const r = BenchEnv.safeParse(raw);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${String(i.path[0])} ${i.message}`);
    throw new ConfigError(`invalid benchmark settings: ${problems.join('; ')}`);
  }
  const e = r.data;
  return Object.freeze({
    executionProvider: e.ORT_EP,
    reps: e.BENCH_REPS ?? 3,
    repsGiven: e.BENCH_REPS ?? null,
    contexts: Object.freeze(
      e.BENCH_CONTEXTS.split(',').map((s) => {
        const [chunks, tokens] = s.split('x').map(Number);
        return Object.freeze({ chunks, tokens });
      }),
    ),
    storiesDir: path.resolve(e.STORIES_DIR ?? path.join(projectRoot(), 'models', 'stories260K')),
    loadSeconds: e.BENCH_LOAD_SECONDS,
    loadConcurrency: Object.freeze(e.BENCH_LOAD_CONCURRENCY.split(',').map(Number)),
    loadQueueLimit: e.BENCH_LOAD_QUEUE_LIMIT,
    gpuVariants: Object.freeze(e.BENCH_DTYPES.split(',')),
    precomputeBatch: e.BENCH_PRECOMPUTE_BATCH,
    shape: Object.freeze(e.BENCH_SHAPE ? (JSON.parse(e.BENCH_SHAPE) as Record<string, number>) : {}),
    profile: e.BENCH_PROFILE,
    torch: e.BENCH_TORCH,
    dispatchOps: e.DISPATCH_OPS,
    scaleShapes: Object.freeze(e.BENCH_SCALE_SHAPES.split(',')),
    scaleWeights: Object.freeze(e.BENCH_SCALE_WEIGHTS.split(',') as WeightFormat[]),
    scaleDir: path.resolve(e.BENCH_SCALE_DIR ?? path.join(os.tmpdir(), 'cacheblend-scale')),
    scaleBatch: e.BENCH_SCALE_BATCH,
    scaleSelections: Object.freeze(e.BENCH_SCALE_SELECTIONS?.split(',') ?? []),
    ttftWeights: Object.freeze(e.BENCH_WEIGHTS.split(',') as WeightFormat[]),
  });
}
