/**
 * `cacheblend calibrate`: the per-model correctness gate (core/eval/calibrate.ts). Runs full, reuse and
 * blend on a small sample (built in, or `--sample`), prints how far blend is from full, and stores the
 * result beside the model's chunk caches in the object store (KV_STORE_URL), where the service reads it.
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import {
  ATTENTION_SOURCES,
  DEFAULT_RATIO,
  SELECTION_STRATEGIES,
  type AttentionSource,
  type BlendOptions,
  type SelectionStrategy,
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
import { resolveWeightFormat, type WeightSetting } from '../core/model/weights/format.js';
import { selectProcessGpu } from '../core/runtime/gpus.js';
import { openObjectStore } from '../core/storage/index.js';
import { numberFlag, withEngineOptions } from './args.js';

/** The calibrate command's flags: commander parses them (cli/main.ts). */
export function defineCalibrateFlags(cmd: Command): Command {
  return withEngineOptions(cmd)
    .option(
      '--sample <file.json>',
      'a JSON list of {"chunks": [...], "question": "..."} (or {"sets": [...]}); default: six built-in stories',
    )
    .option('--tokens <n>', 'greedy tokens compared with full prefill', '16')
    .option('--ratio <r>', 'fraction of context tokens blend recomputes', String(DEFAULT_RATIO))
    .addOption(
      new Option('--selection <strategy>', 'how blend picks its tokens').choices(SELECTION_STRATEGIES),
    )
    .addOption(
      new Option('--attention <source>', "where the question's attention is measured").choices(
        ATTENTION_SOURCES,
      ),
    )
    .option('--no-store', "only print the result; do not store it beside the model's caches")
    .option('--json', 'print one JSON object')
    .addHelpText(
      'after',
      `
Measures blend against full prefill for one model, with every candidate selection (or the one given):
first-token KL and greedy agreement over the first N tokens, and chooses the selection with the lowest
90th-percentile KL among those whose agreement beats reuse's. A model past the thresholds is flagged
(docs/accuracy.md, "The calibration gate and the per-model choice"). The result is stored beside the
model's chunk caches in KV_STORE_URL; the service blends requests that name no selection with the
choice, reports it at start and in /v1/models, and with CALIBRATION_GATE=full serves a flagged model's
blend requests in full mode.
Exit code 0, or 3 when the model is flagged.`,
    );
}

/** What commander hands over (numbers are checked here, with the flag's name). */
export interface CalibrateFlags {
  model?: string;
  sample?: string;
  tokens: string;
  ratio: string;
  selection?: SelectionStrategy;
  attention?: AttentionSource;
  ep?: ExecutionProvider;
  weights?: WeightSetting;
  store: boolean;
  json?: boolean;
}

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

/** Returns the exit code: 0, or 3 when the model is flagged. */
export async function calibrateCommand(
  values: CalibrateFlags,
  out: (s: string) => void,
  config: Config,
): Promise<number> {
  const sample = values.sample ? readSample(values.sample) : [...CALIBRATION_SAMPLE];
  const blend: BlendOptions = {
    mode: 'blend',
    ratio: numberFlag(values.ratio, 'ratio', { min: 0, max: 1 })!,
    ...(values.selection && { selection: values.selection }),
    ...(values.attention && { attention: values.attention }),
  };
  const tokens = numberFlag(values.tokens, 'tokens', { integer: true, min: 1, max: 256 })!;
  const ep = values.ep ?? config.executionProvider;
  const weights = values.weights ?? config.weights;
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
  if (values.store) {
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
