/**
 * The per-model correctness gate at serving time: the model's calibration (cacheblend calibrate), read
 * once at start and logged; a flagged model's blend jobs run in full mode when CALIBRATION_GATE is `full`,
 * and blend jobs that name no selection run with the one the calibration chose.
 */
import type { MessagePort } from 'node:worker_threads';
import { errorMessage } from '../errors.js';
import {
  describeCalibration,
  readCalibration,
  servedSelection,
  type ServedSelection,
} from '../eval/calibrate.js';
import type { BlendJobData } from '../queue/contracts.js';
import { runBlend } from './blend-job.js';
import type { BlendThreadResult, EngineContext } from './engine-context.js';

export interface Gate {
  servesFull: boolean;
  /** The selection a blend job that names none runs with: the calibration's choice, else the default. */
  selection: ServedSelection;
}

/**
 * The model's calibration (cacheblend calibrate), read once at start and logged: a flagged model is
 * served in full mode when CALIBRATION_GATE is `full`. An unreadable store only loses the report.
 */
export async function openGate(ctx: EngineContext): Promise<Gate> {
  const { engine, store, log, init } = ctx;
  const calibration = await readCalibration(store, engine.kvFingerprint).catch((err: unknown) => {
    log.warn('could not read the calibration', { error: errorMessage(err) });
    return null;
  });
  const servesFull = calibration?.flagged === true && init.calibrationGate === 'full';
  const selection = servedSelection(calibration);
  const fields = { model: engine.model.source, servesFull, selection };
  if (calibration?.flagged) log.warn(`calibration: ${describeCalibration(calibration)}`, fields);
  else log.info(`calibration: ${describeCalibration(calibration)}`, fields);
  return { servesFull, selection };
}

/**
 * The job with the gate's selection where it names no strategy; an attention source it names is kept for
 * the selections that take one.
 */
function withSelection(gate: Gate, job: BlendJobData): BlendJobData {
  if (job.mode !== 'blend' || job.selection?.strategy || gate.selection.from !== 'calibration') return job;
  const { strategy } = gate.selection;
  const takesAttention = strategy === 'question' || strategy === 'combined';
  const attention = takesAttention ? (job.selection?.attention ?? gate.selection.attention) : null;
  return { ...job, selection: { ...job.selection, strategy, attention: attention ?? undefined } };
}

/** A blend job, in full mode (and marked so) when the gate serves this model in full. */
export async function runGated(
  ctx: EngineContext,
  gate: Gate,
  job: BlendJobData,
  port?: MessagePort,
  cancel?: Int32Array,
): Promise<BlendThreadResult> {
  if (job.mode === 'blend' && gate.servesFull) {
    return { ...(await runBlend(ctx, { ...job, mode: 'full' }, port, cancel)), gatedToFull: true };
  }
  return runBlend(ctx, withSelection(gate, job), port, cancel);
}
