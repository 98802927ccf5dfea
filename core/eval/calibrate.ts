/**
 * The per-model correctness gate: how far blend's output is from full prefill on a small sample, stored
 * beside the model's chunk caches in the object store (`kv/<kv fingerprint>/calibration.json`) so every
 * service process of that model reads the same verdict. Measured by `cacheblend calibrate`; read by the
 * blend worker at start (logged; with CALIBRATION_GATE=full a flagged model's blend requests run in full
 * mode) and by the API for `/v1/models`.
 */
import {
  blendPrefill,
  defaultSelection,
  klDivergence,
  selectionName,
  type BlendOptions,
} from '../blend/index.js';
import { storedChunk } from '../inference/pipeline.js';
import type { KvDtype } from '../kv/format.js';
import { releaseCache, type Engine } from '../model/engine.js';
import { decode } from '../model/generate.js';
import type { ObjectStore } from '../storage/types.js';
import type { CalibrationSet } from './calibration-sample.js';

/**
 * A model is flagged when blend's mean first-token KL from full exceeds `maxMeanKl` nats or its mean
 * greedy agreement with full over the first tokens falls below `minMeanAgreement`. docs/accuracy.md
 * ("The calibration gate") gives the measurements these come from.
 */
export const CALIBRATION_THRESHOLDS = Object.freeze({ maxMeanKl: 0.1, minMeanAgreement: 0.5 });

export interface ModeDistance {
  meanKl: number;
  maxKl: number;
  /** Share of the first `tokens` greedy tokens equal to full's, position by position. */
  meanAgreement: number;
  minAgreement: number;
}

export interface Calibration {
  kvFingerprint: string;
  model: string;
  /** The blend options calibrated (the service's defaults unless told otherwise). */
  blend: { ratio: number; selection: string; checkLayer: number };
  sample: { name: string; sets: number; tokens: number };
  blendVsFull: ModeDistance;
  /** Reuse (nothing recomputed) for scale: how much of its distance blend removes. */
  reuseVsFull: ModeDistance;
  thresholds: { maxMeanKl: number; minMeanAgreement: number };
  flagged: boolean;
  /** Why it is flagged (empty when not). */
  reasons: string[];
  measuredAt: string;
}

export function calibrationKey(kvFingerprint: string): string {
  return `kv/${kvFingerprint.slice(0, 16)}/calibration.json`;
}

export interface CalibrateOptions {
  sample: readonly CalibrationSet[];
  sampleName: string;
  /** Greedy tokens compared (default 16). */
  tokens?: number;
  blend: BlendOptions;
  kvDtype: KvDtype;
}

/** Full, reuse and blend on every sample set (chunk caches through the stored format, as served). */
export async function calibrate(engine: Engine, o: CalibrateOptions): Promise<Calibration> {
  const tok = engine.model.tokenizer;
  const n = o.tokens ?? 16;
  const runs = { blend: [] as { kl: number; agree: number }[], reuse: [] as { kl: number; agree: number }[] };
  for (const set of o.sample) {
    const chunks = await Promise.all(set.chunks.map((c) => storedChunk(engine, tok.encode(c), o.kvDtype)));
    const q = tok.encode(set.question);
    const run = async (opts: BlendOptions) => {
      const { cache, prefill } = await blendPrefill(engine, chunks, q, opts, n);
      const { tokens } = await decode(engine, cache, prefill.firstTokenLogits, {
        maxTokens: n,
        stopAtEos: false,
      });
      releaseCache(cache);
      return { logits: prefill.firstTokenLogits, tokens };
    };
    const full = await run({ mode: 'full' });
    for (const [mode, opts] of [
      ['blend', o.blend],
      ['reuse', { mode: 'reuse' }],
    ] as const) {
      const r = await run(opts);
      const same = r.tokens.filter((t, i) => t === full.tokens[i]).length;
      runs[mode].push({ kl: klDivergence(full.logits, r.logits), agree: same / n });
    }
  }
  const blendVsFull = distance(runs.blend);
  const t = CALIBRATION_THRESHOLDS;
  const reasons = [
    ...(blendVsFull.meanKl > t.maxMeanKl
      ? [`mean first-token KL ${blendVsFull.meanKl.toFixed(4)} > ${t.maxMeanKl}`]
      : []),
    ...(blendVsFull.meanAgreement < t.minMeanAgreement
      ? [`mean greedy agreement ${blendVsFull.meanAgreement.toFixed(3)} < ${t.minMeanAgreement}`]
      : []),
  ];
  return {
    kvFingerprint: engine.kvFingerprint,
    model: engine.model.source,
    blend: {
      ratio: o.blend.ratio ?? 0.15,
      selection: selectionName({
        ...o.blend,
        selection: o.blend.selection ?? defaultSelection(engine.device !== null),
      }),
      checkLayer: o.blend.checkLayer ?? 1,
    },
    sample: { name: o.sampleName, sets: o.sample.length, tokens: n },
    blendVsFull,
    reuseVsFull: distance(runs.reuse),
    thresholds: { ...t },
    flagged: reasons.length > 0,
    reasons,
    measuredAt: new Date().toISOString(),
  };
}

function distance(xs: { kl: number; agree: number }[]): ModeDistance {
  const mean = (f: (x: { kl: number; agree: number }) => number) =>
    xs.reduce((a, x) => a + f(x), 0) / xs.length;
  return {
    meanKl: mean((x) => x.kl),
    maxKl: Math.max(...xs.map((x) => x.kl)),
    meanAgreement: mean((x) => x.agree),
    minAgreement: Math.min(...xs.map((x) => x.agree)),
  };
}

export async function writeCalibration(store: ObjectStore, c: Calibration): Promise<string> {
  const key = calibrationKey(c.kvFingerprint);
  await store.put(key, Buffer.from(`${JSON.stringify(c, null, 2)}\n`));
  return key;
}

/** The stored calibration of a model's caches, or null when it was never calibrated (or is unreadable). */
export async function readCalibration(
  store: ObjectStore,
  kvFingerprint: string,
): Promise<Calibration | null> {
  const raw = await store.get(calibrationKey(kvFingerprint));
  if (!raw) return null;
  try {
    const c = JSON.parse(raw.toString('utf8')) as Calibration;
    return c.kvFingerprint === kvFingerprint && typeof c.flagged === 'boolean' ? c : null;
  } catch {
    return null;
  }
}

/** One line for logs and the CLI. */
export function describeCalibration(c: Calibration | null): string {
  if (!c) return 'not calibrated (run `cacheblend calibrate`)';
  const b = c.blendVsFull;
  const verdict = c.flagged ? `FLAGGED: ${c.reasons.join('; ')}` : 'ok';
  return (
    `${verdict} — blend (${c.blend.selection}, r=${c.blend.ratio}) vs full on ${c.sample.sets} sets: ` +
    `first-token KL ${b.meanKl.toFixed(4)} (reuse ${c.reuseVsFull.meanKl.toFixed(4)}), greedy agreement ` +
    `${b.meanAgreement.toFixed(3)} over ${c.sample.tokens} tokens (reuse ${c.reuseVsFull.meanAgreement.toFixed(3)})`
  );
}
