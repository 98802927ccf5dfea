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
 */
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { projectRoot } from '../util/fs.js';
import type { ExecutionProvider } from './index.js';

export interface BenchSettings {
  readonly executionProvider: ExecutionProvider;
  readonly reps: number;
  readonly contexts: readonly { readonly chunks: number; readonly tokens: number }[];
  readonly storiesDir: string;
  readonly loadSeconds: number;
  readonly loadConcurrency: readonly number[];
  readonly loadQueueLimit: number;
}

const BenchEnv = z.object({
  ORT_EP: z.enum(['cpu', 'webgpu', 'cuda'], { error: 'must be one of cpu, webgpu, cuda' }).default('cpu'),
  BENCH_REPS: z
    .string()
    .regex(/^[1-9]\d{0,3}$/, 'must be a whole number from 1 to 9999')
    .transform(Number)
    .default(3),
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
    reps: e.BENCH_REPS,
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
  });
}
