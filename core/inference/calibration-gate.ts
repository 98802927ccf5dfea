/**
 * The per-model correctness gate at serving time: the model's calibration (cacheblend calibrate), read
 * once at start and logged; a flagged model's blend jobs run in full mode when CALIBRATION_GATE is `full`.
 */
import type { MessagePort } from 'node:worker_threads';
import { errorMessage } from '../errors.js';
import { describeCalibration, readCalibration } from '../eval/calibrate.js';
import type { BlendJobData } from '../queue/contracts.js';
import { runBlend } from './blend-job.js';
import type { BlendThreadResult, EngineContext } from './engine-context.js';

export interface Gate {
  servesFull: boolean;
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
  const fields = { model: engine.model.source, servesFull };
  if (calibration?.flagged) log.warn(`calibration: ${describeCalibration(calibration)}`, fields);
  else log.info(`calibration: ${describeCalibration(calibration)}`, fields);
  return { servesFull };
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
  return runBlend(ctx, job, port, cancel);
}
