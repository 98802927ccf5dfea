/**
 * `cacheblend calibrate`: the per-model correctness gate (core/eval/calibrate.ts). Runs full, reuse and
 * blend on a small sample (built in, or `--sample`), prints how far blend is from full, and stores the
 * result beside the model's chunk caches in the object store (KV_STORE_URL), where the service reads it.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  ATTENTION_SOURCES,
  DEFAULT_RATIO,
  SELECTION_STRATEGIES,
  type BlendOptions,
} from '../core/blend/index.js';
import type { Config, ExecutionProvider } from '../core/config/index.js';
import { InvalidArgumentError } from '../core/errors.js';
import {
  calibrate,
  describeCalibration,
  writeCalibration,
  type Calibration,
} from '../core/eval/calibrate.js';
import { CALIBRATION_SAMPLE, type CalibrationSet } from '../core/eval/calibration-sample.js';
import { Engine } from '../core/model/engine.js';
import { loadModel } from '../core/model/load.js';
import { resolveWeightFormat, WEIGHT_FORMATS, type WeightSetting } from '../core/model/weights/format.js';
import { selectProcessGpu } from '../core/runtime/gpus.js';
import { openObjectStore } from '../core/storage/index.js';
import { choiceFlag, numberFlag, parseFlags } from './args.js';

export const CALIBRATE_USAGE = `usage: cacheblend calibrate [--model <path|name>] [--sample <file.json>] [--tokens N]
         [--ratio R] [--selection deviation|question|combined] [--attention check|lookahead]
         [--ep cpu|webgpu|cuda] [--weights auto|fp32|fp16|q4] [--no-store] [--json]

  Measures blend against full prefill for one model: first-token KL and greedy agreement over the
  first N tokens (default 16) on a small sample (built in: six short English stories; --sample: a JSON
  list of {"chunks": [...], "question": "..."}, or {"sets": [...]}). A model past the thresholds
  (docs/accuracy.md, "The calibration gate") is flagged. The result is stored beside the model's chunk
  caches in KV_STORE_URL (--no-store: only printed); the service reports it at start and in /v1/models,
  and with CALIBRATION_GATE=full serves a flagged model's blend requests in full mode.
  Exit code 0, or 3 when the model is flagged.`;

const FLAGS = {
  model: { type: 'string' },
  sample: { type: 'string' },
  tokens: { type: 'string' },
  ratio: { type: 'string' },
  selection: { type: 'string' },
  attention: { type: 'string' },
  ep: { type: 'string' },
  weights: { type: 'string' },
  'no-store': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const SampleSet = z.object({
  chunks: z.array(z.string().min(1)).min(1).max(64),
  question: z.string().min(1),
});
const SampleFile = z.union([
  z.array(SampleSet).min(1).max(256),
  z.object({ sets: z.array(SampleSet).min(1).max(256) }),
]);

function readSample(file: string): CalibrationSet[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`--sample: cannot read ${file} as JSON (${(err as Error).message})`);
  }
  const r = SampleFile.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new InvalidArgumentError(
      `--sample: ${file} must hold a list of {"chunks": [non-empty strings], "question": "…"} ` +
        `(${issue.path.join('.') || 'top level'}: ${issue.message})`,
    );
  }
  return Array.isArray(r.data) ? r.data : r.data.sets;
}

/** Returns the exit code: 0, or 3 when the model is flagged; null for --help. */
export async function calibrateCommand(
  argv: string[],
  out: (s: string) => void,
  config: Config,
): Promise<number> {
  const { values } = parseFlags(argv, FLAGS);
  if (values.help) {
    out(`${CALIBRATE_USAGE}\n`);
    return 0;
  }
  const sample = values.sample ? readSample(values.sample) : [...CALIBRATION_SAMPLE];
  const blend: BlendOptions = {
    mode: 'blend',
    ratio: numberFlag(values.ratio, 'ratio', { min: 0, max: 1 }) ?? DEFAULT_RATIO,
    ...(values.selection && {
      selection: choiceFlag(values.selection, 'selection', SELECTION_STRATEGIES, 'deviation'),
    }),
    ...(values.attention && {
      attention: choiceFlag(values.attention, 'attention', ATTENTION_SOURCES, 'check'),
    }),
  };
  const tokens = numberFlag(values.tokens, 'tokens', { integer: true, min: 1, max: 256 }) ?? 16;
  const ep = choiceFlag<ExecutionProvider>(
    values.ep,
    'ep',
    ['cpu', 'webgpu', 'cuda'],
    config.executionProvider,
  );
  const weights = choiceFlag<WeightSetting>(
    values.weights,
    'weights',
    ['auto', ...WEIGHT_FORMATS],
    config.weights,
  );
  const model = await loadModel(values.model ?? config.model, config.modelSource);
  selectProcessGpu(ep, config.gpuIndex);
  const engine = await Engine.create(model, {
    executionProvider: ep,
    deviceDtype: config.deviceDtype,
    weights: resolveWeightFormat(weights, ep, config.deviceDtype),
  });
  let result: Calibration;
  try {
    result = await calibrate(engine, {
      sample,
      sampleName: values.sample ?? 'built-in',
      tokens,
      blend,
      kvDtype: config.kvDtype,
    });
  } finally {
    await engine.dispose();
  }
  let stored: string | null = null;
  if (!values['no-store']) {
    const store = openObjectStore(config.kvStoreUrl, { s3: config.s3 });
    try {
      stored = await writeCalibration(store, result);
    } finally {
      await store.close();
    }
  }
  out(
    values.json
      ? `${JSON.stringify({ ...result, stored })}\n`
      : `${model.source}: ${describeCalibration(result)}\n${stored ? `stored as ${stored}` : 'not stored (--no-store)'}\n`,
  );
  return result.flagged ? 3 : 0;
}
