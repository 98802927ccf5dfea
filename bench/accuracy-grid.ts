/**
 * bench:accuracy's configurations (the grid), its JSON rows and its chart, apart from the run itself
 * (accuracy.ts).
 */
import {
  DEFAULT_SELECTION,
  attentionRequest,
  type AttentionRequest,
  type AttentionSource,
  type BlendMode,
  type BlendOptions,
  type DeviationMetric,
  type SelectionStrategy,
} from '../core/blend/index.js';
import type { AccuracySummary, QaSetName, QuestionType } from '../core/eval/index.js';
import type { KvDtype } from '../core/kv/format.js';
import type { WeightFormat } from '../core/model/weights/format.js';
import { lineChart, type Series } from './common.js';

export interface AccuracyConfig {
  label: string;
  /** 'auto': `ratio: "auto"`, the loading controller deciding per question (core/eval/auto.ts). */
  options: BlendOptions | 'auto';
}

const RATIOS = [0.05, 0.1, 0.15, 0.2, 0.3, 0.5];
const METRICS: DeviationMetric[] = ['k', 'v', 'kv'];
/** Selections beside plain deviation: [strategy, where question attention is measured, sinks per chunk]. */
const SELECTIONS: [SelectionStrategy, AttentionSource, number][] = [
  ['question', 'check', 0],
  ['combined', 'check', 0],
  ['question', 'lookahead', 0],
  ['combined', 'lookahead', 0],
  ['deviation', 'check', 2],
  ['combined', 'check', 2],
  ['fused', 'check', 0],
];
const GRADUAL = [
  [0.3, 0.2, 0.15],
  [0.5, 0.3, 0.15],
  [0.3, 0.15, 0.05],
];
/** CacheBlend's K-deviation selection at the default ratio, whose misses the oracles analyse. */
export const DEFAULT_LABEL = 'blend k/1 r=0.15';
/** The default selection (DEFAULT_SELECTION) at the default ratio. */
export const NEW_DEFAULT_LABEL = 'blend combined lookahead/1 r=0.15';
export const ANALYSED = [
  'reuse',
  DEFAULT_LABEL,
  NEW_DEFAULT_LABEL,
  'blend fused/1 r=0.15',
  'blend combined/1 r=0.15',
  'blend question/1 r=0.15',
  'blend k/3 r=0.15',
  'blend k/2 r=0.15',
  'blend kv/1 r=0.15',
];

/**
 * The grid, as a list so new rows are one line each (`blend auto`: the loading controller, per question).
 * Labels: `blend <metric>/<check layer> r=<ratio>`.
 */
export function grid(): AccuracyConfig[] {
  const configs: AccuracyConfig[] = [
    { label: 'full', options: { mode: 'full' } },
    { label: 'prefix', options: { mode: 'prefix' } },
    { label: 'reuse', options: { mode: 'reuse' } },
  ];
  const blend = (metric: DeviationMetric, checkLayer: number, ratio: number) =>
    configs.push({
      label: `blend ${metric}/${checkLayer} r=${ratio}`,
      options: { mode: 'blend', ratio, metric, checkLayer, selection: 'deviation' },
    });
  for (const metric of METRICS) for (const r of RATIOS) blend(metric, 1, r);
  for (const checkLayer of [2, 3]) for (const r of RATIOS) blend('k', checkLayer, r);
  // The other selections (core/blend/selection.ts), check layer 1, K where deviation takes part:
  // `blend <selection>[ lookahead][ sinks=n]/1 r=…`.
  for (const [selection, attention, sinkTokens] of SELECTIONS) {
    for (const ratio of RATIOS) {
      const name = `${selection}${attention === 'lookahead' ? ' lookahead' : ''}${sinkTokens ? ` sinks=${sinkTokens}` : ''}`;
      configs.push({
        label: `blend ${name}/1 r=${ratio}`,
        options: {
          mode: 'blend',
          ratio,
          metric: 'k',
          checkLayer: 1,
          selection,
          ...(selection !== 'fused' && { attention }),
          sinkTokens,
        },
      });
    }
  }
  // combined with a deeper check layer, at the default ratio only (docs/accuracy.md, the r = 0.15 target).
  for (const checkLayer of [2, 3])
    configs.push({
      label: `blend combined/${checkLayer} r=0.15`,
      options: {
        mode: 'blend',
        ratio: 0.15,
        metric: 'k',
        checkLayer,
        selection: 'combined',
        attention: 'check',
      },
    });
  configs.push({ label: 'blend auto', options: 'auto' });
  for (const g of GRADUAL) {
    configs.push({
      label: `blend k/1 gradual ${g.join(',')}`,
      options: { mode: 'blend', gradualRatios: g, metric: 'k', checkLayer: 1, selection: 'deviation' },
    });
  }
  return configs;
}

/** One row of bench/results/accuracy.json (the shape issue 12 asks for; gradual rows add their ratios). */
export interface AccuracyRow {
  set: QaSetName;
  mode: BlendMode;
  ratio: number | null;
  metric: DeviationMetric | null;
  checkLayer: number | null;
  /** Blend: how the check layer's tokens were chosen, and the sink tokens forced in per chunk. */
  selection: SelectionStrategy | null;
  /** Where the question's attention was measured (`both` for fused); null for deviation. */
  attention: AttentionRequest | null;
  sinkTokens: number | null;
  accuracy: number;
  perType: Record<QuestionType, number>;
  recomputedShare: number;
  gradualRatios?: number[];
  /** `ratio: "auto"`: `ratio` is the mean of the ratios the controller chose. */
  auto?: true;
  /** The linear layers' weight format (WeightFormat); the grid runs in fp32. */
  weights: WeightFormat;
  /** The dtype the chunk caches were stored in (KV_DTYPE); the grid uses fp16, the default. */
  kvDtype: KvDtype;
}

export function toRow(set: QaSetName, c: AccuracyConfig, s: AccuracySummary): AccuracyRow {
  if (c.options === 'auto') {
    const meanRatio = s.outcomes.reduce((a, o) => a + o.ratio, 0) / Math.max(1, s.outcomes.length);
    return {
      set,
      mode: 'blend',
      ratio: meanRatio,
      metric: 'k',
      checkLayer: 1,
      selection: DEFAULT_SELECTION,
      attention: attentionRequest(DEFAULT_SELECTION, undefined),
      sinkTokens: 0,
      accuracy: s.accuracy,
      perType: s.perType,
      recomputedShare: s.recomputedShare,
      auto: true,
      weights: 'fp32',
      kvDtype: 'float16',
    };
  }
  const o = c.options;
  const blend = o.mode === 'blend';
  return {
    set,
    mode: o.mode,
    ratio: blend ? (o.gradualRatios?.[0] ?? o.ratio ?? 0.15) : null,
    metric: blend ? (o.metric ?? 'k') : null,
    checkLayer: blend ? (o.checkLayer ?? 1) : null,
    selection: blend ? (o.selection ?? DEFAULT_SELECTION) : null,
    attention: blend ? attentionRequest(o.selection ?? DEFAULT_SELECTION, o.attention) : null,
    sinkTokens: blend ? (o.sinkTokens ?? 0) : null,
    accuracy: s.accuracy,
    perType: s.perType,
    recomputedShare: s.recomputedShare,
    ...(o.gradualRatios && { gradualRatios: o.gradualRatios }),
    weights: 'fp32',
    kvDtype: 'float16',
  };
}

/** Accuracy against the recomputed share, one line per metric (check layer 1) and per deeper check layer. */
export function chart(set: QaSetName, all: AccuracyRow[]): string {
  const rs = all.filter((r) => r.set === set && r.weights === 'fp32' && r.kvDtype === 'float16');
  const ends = (mode: BlendMode) => rs.find((r) => r.mode === mode)!;
  const [reuse, full] = [ends('reuse'), ends('full')];
  const line = (name: string, pick: (r: AccuracyRow) => boolean): Series => ({
    name,
    points: [
      reuse,
      ...rs.filter((r) => r.mode === 'blend' && !r.gradualRatios && !r.auto && pick(r)),
      full,
    ].map((r) => ({ x: Number(r.recomputedShare.toFixed(3)), y: r.accuracy })),
  });
  const dev = (r: AccuracyRow) => r.selection === 'deviation' && !r.sinkTokens;
  const sel =
    (selection: SelectionStrategy, attention: AccuracyRow['attention'], sinks = 0) =>
    (r: AccuracyRow) =>
      r.selection === selection && r.attention === attention && (r.sinkTokens ?? 0) === sinks;
  const series = [
    line('K, check layer 1', (r) => dev(r) && r.metric === 'k' && r.checkLayer === 1),
    line('V, check layer 1', (r) => dev(r) && r.metric === 'v' && r.checkLayer === 1),
    line('K+V, check layer 1', (r) => dev(r) && r.metric === 'kv' && r.checkLayer === 1),
    line('K, check layer 2', (r) => dev(r) && r.metric === 'k' && r.checkLayer === 2),
    line('K, check layer 3', (r) => dev(r) && r.metric === 'k' && r.checkLayer === 3),
    line('question, check layer 1', sel('question', 'check')),
    line('combined, check layer 1', sel('combined', 'check')),
    line('question, lookahead', sel('question', 'lookahead')),
    line('combined, lookahead', sel('combined', 'lookahead')),
    line('fused', sel('fused', 'both')),
    line('K + 2 sinks per chunk', sel('deviation', null, 2)),
    // ratio "auto": one point, the controller's choices averaged.
    {
      name: 'ratio auto',
      points: rs.filter((r) => r.auto).map((r) => ({ x: r.recomputedShare, y: r.accuracy })),
    },
  ];
  const ys = rs.map((r) => r.accuracy);
  const lo = Math.max(0, Math.floor(Math.min(...ys) * 20) / 20 - 0.05);
  return lineChart({
    title: `Accuracy vs recomputed share (cbqa-3M, ${set})`,
    xLabel: 'recomputed share of token × layer work',
    yLabel: 'accuracy',
    series,
    yRange: [lo, Math.min(1, Math.ceil(Math.max(...ys) * 20) / 20 + 0.02)],
    xTicks: [0, 0.25, 0.5, 0.75, 1],
  });
}
