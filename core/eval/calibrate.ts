/**
 * The per-model correctness gate: how far blend's output is from full prefill on a small sample, stored
 * beside the model's chunk caches in the object store (`kv/<kv fingerprint>/calibration.json`) so every
 * service process of that model reads the same verdict. Measured by `cacheblend calibrate`; read by the
 * blend worker at start (logged; with CALIBRATION_GATE=full a flagged model's blend requests run in full
 * mode) and by the API for `/v1/models`.
 */
import {
  attentionRequest,
  blendPrefill,
  DEFAULT_SELECTION,
  klDivergence,
  type AttentionSource,
  type BlendOptions,
  type SelectionStrategy,
} from '../blend/index.js';
import { storedChunk } from '../inference/chunk-objects.js';
import type { KvDtype } from '../kv/format.js';
import { releaseCache, type Engine } from '../model/engine.js';
import { decode } from '../model/generate.js';
import type { ObjectStore } from '../storage/types.js';
import type { CalibrationSet } from './calibration-sample.js';
import {
  CHOICE_RULE,
  chooseSelection,
  quantile,
  scoreCandidate,
  SELECTION_CANDIDATES,
  type CandidateScore,
  type SelectionCandidate,
} from './choose-selection.js';

/**
 * A model is flagged when blend's mean first-token KL from full exceeds `maxMeanKl` nats or its mean
 * greedy agreement with full over the first tokens falls below `minMeanAgreement`. docs/accuracy.md
 * ("The calibration gate and the per-model choice") gives the measurements these come from.
 */
export const CALIBRATION_THRESHOLDS = Object.freeze({ maxMeanKl: 0.1, minMeanAgreement: 0.5 });

export interface ModeDistance {
  meanKl: number;
  /** 90th percentile of the per-set KL: the worst case a rule can weigh without one outlier deciding. */
  p90Kl: number;
  maxKl: number;
  /** Share of the first `tokens` greedy tokens equal to full's, position by position. */
  meanAgreement: number;
  minAgreement: number;
}

export interface Calibration {
  kvFingerprint: string;
  model: string;
  /** The blend options calibrated: the chosen selection (or the one asked for), ratio and check layer. */
  blend: { ratio: number; selection: string; checkLayer: number };
  /**
   * The selection the service blends with for this model when a request names none: the candidate the
   * rule picks (`rule`), with every candidate's scores; one candidate when calibrate was told a selection.
   */
  choice: {
    strategy: SelectionStrategy;
    attention: AttentionSource | null;
    rule: string;
    candidates: CandidateScore[];
  };
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

/**
 * The candidates calibrate compares: the one asked for, else every host candidate (deviation alone on a
 * device-resident engine, which runs no other selection).
 */
function candidates(engine: Engine, blend: BlendOptions): SelectionCandidate[] {
  if (blend.selection) return [{ selection: blend.selection, attention: blend.attention }];
  return engine.device ? [{ selection: 'deviation' }] : [...SELECTION_CANDIDATES];
}

type Run = { kl: number; agree: number };

/**
 * Full, reuse and every candidate selection on every sample set (chunk caches through the stored format,
 * as served); the rule (choose-selection.ts) picks the selection the service blends with.
 */
export async function calibrate(engine: Engine, o: CalibrateOptions): Promise<Calibration> {
  const tok = engine.model.tokenizer;
  const n = o.tokens ?? 16;
  const cands = candidates(engine, o.blend);
  const runs = { reuse: [] as Run[], blend: cands.map(() => [] as Run[]) };
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
    const measure = async (opts: BlendOptions): Promise<Run> => {
      const r = await run(opts);
      const same = r.tokens.filter((t, i) => t === full.tokens[i]).length;
      return { kl: klDivergence(full.logits, r.logits), agree: same / n };
    };
    runs.reuse.push(await measure({ mode: 'reuse' }));
    for (const [i, c] of cands.entries()) {
      const opts = { ...o.blend, selection: c.selection, attention: c.attention };
      runs.blend[i].push(await measure(opts));
    }
  }
  const scores = cands.map((c, i) =>
    scoreCandidate(
      c,
      runs.blend[i].map((r) => r.kl),
      runs.blend[i].map((r) => r.agree),
      runs.reuse.map((r) => r.kl),
    ),
  );
  const reuseVsFull = distance(runs.reuse);
  const chosen = chooseSelection(scores, reuseVsFull.meanAgreement);
  const blendVsFull = distance(runs.blend[scores.indexOf(chosen)]);
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
    blend: { ratio: o.blend.ratio ?? 0.15, selection: chosen.name, checkLayer: o.blend.checkLayer ?? 1 },
    choice: {
      strategy: chosen.selection,
      attention: chosen.attention,
      rule: CHOICE_RULE,
      candidates: scores,
    },
    sample: { name: o.sampleName, sets: o.sample.length, tokens: n },
    blendVsFull,
    reuseVsFull,
    thresholds: { ...t },
    flagged: reasons.length > 0,
    reasons,
    measuredAt: new Date().toISOString(),
  };
}

function distance(xs: Run[]): ModeDistance {
  const mean = (f: (x: Run) => number) => xs.reduce((a, x) => a + f(x), 0) / xs.length;
  return {
    meanKl: mean((x) => x.kl),
    p90Kl: quantile(
      xs.map((x) => x.kl),
      0.9,
    ),
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
    // A calibration without a choice (an older format) reads as none: calibrate the model again.
    const ok = c.kvFingerprint === kvFingerprint && typeof c.flagged === 'boolean' && !!c.choice?.strategy;
    return ok ? c : null;
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
    `${verdict} — blend (${c.blend.selection}, r=${c.blend.ratio}; chosen of ${c.choice.candidates.length} by ` +
    `worst case) vs full on ${c.sample.sets} sets: first-token KL ${b.meanKl.toFixed(4)}, 90th percentile ` +
    `${b.p90Kl.toFixed(4)} (reuse ${c.reuseVsFull.meanKl.toFixed(4)}, ${c.reuseVsFull.p90Kl.toFixed(4)}), greedy agreement ` +
    `${b.meanAgreement.toFixed(3)} over ${c.sample.tokens} tokens (reuse ${c.reuseVsFull.meanAgreement.toFixed(3)})`
  );
}

/** The selection blend uses when a request names none, and where it comes from. */
export interface ServedSelection {
  strategy: SelectionStrategy;
  attention: AttentionSource | null;
  from: 'calibration' | 'default';
}

/**
 * The model's calibrated choice when it has one, else the built-in default (DEFAULT_SELECTION): the same
 * on every backend, since the host and the device engine run every selection alike.
 */
export function servedSelection(c: Calibration | null): ServedSelection {
  const chosen = c?.choice;
  if (chosen) return { strategy: chosen.strategy, attention: chosen.attention, from: 'calibration' };
  const strategy = DEFAULT_SELECTION;
  const attention = attentionRequest(strategy, undefined);
  return { strategy, attention: attention === 'both' ? null : attention, from: 'default' };
}
