/**
 * Choosing a model's selection by its worst cases: every candidate selection is measured against full
 * prefill on the model's sample (calibrate.ts), and the rule below picks one. A mean over a few sets hides
 * the set where a selection lands further from full than reuse; the 90th percentile of the per-set KL does
 * not, and the agreement condition keeps a selection whose continuations drift from full out of the running.
 */
import { selectionName } from '../blend/index.js';
import type { AttentionSource, SelectionStrategy } from '../blend/index.js';

export interface SelectionCandidate {
  selection: SelectionStrategy;
  /** Where question attention is measured (question, combined); absent for deviation and fused. */
  attention?: AttentionSource;
}

/** The selections `cacheblend calibrate` compares (the host and the device engine run each alike). */
export const SELECTION_CANDIDATES: readonly SelectionCandidate[] = [
  { selection: 'deviation' },
  { selection: 'question', attention: 'lookahead' },
  { selection: 'combined', attention: 'lookahead' },
  { selection: 'combined', attention: 'check' },
  { selection: 'fused' },
];

export const CHOICE_RULE =
  "the lowest 90th-percentile first-token KL from full among the candidates whose mean greedy agreement with full beats reuse's (all candidates when none does); ties: the lower mean KL";

/** One candidate measured on a sample: per-set first-token KL and greedy agreement with full. */
export interface CandidateScore {
  /** The selection's name in tables (`combined lookahead`). */
  name: string;
  selection: SelectionStrategy;
  attention: AttentionSource | null;
  p90Kl: number;
  meanKl: number;
  maxKl: number;
  meanAgreement: number;
  /** Sets on which its KL is at least reuse's on the same set. */
  worseThanReuse: number;
}

/** The p-quantile (0…1) of xs, linear between order statistics. */
export function quantile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const at = p * (s.length - 1);
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}

/** A candidate's scores from its per-set KL and agreement, and reuse's KL on the same sets. */
export function scoreCandidate(
  c: SelectionCandidate,
  kls: number[],
  agreements: number[],
  reuseKls: number[],
): CandidateScore {
  return {
    name: selectionName(c),
    selection: c.selection,
    attention: c.attention ?? null,
    p90Kl: quantile(kls, 0.9),
    meanKl: kls.reduce((a, b) => a + b, 0) / kls.length,
    maxKl: Math.max(...kls),
    meanAgreement: agreements.reduce((a, b) => a + b, 0) / agreements.length,
    worseThanReuse: kls.filter((k, i) => k >= reuseKls[i]).length,
  };
}

/** The candidate CHOICE_RULE picks, given reuse's mean greedy agreement on the same sample. */
export function chooseSelection(scores: readonly CandidateScore[], reuseAgreement: number): CandidateScore {
  const eligible = scores.filter((s) => s.meanAgreement > reuseAgreement);
  const pool = eligible.length ? eligible : scores;
  return [...pool].sort((a, b) => a.p90Kl - b.p90Kl || a.meanKl - b.meanKl)[0];
}
