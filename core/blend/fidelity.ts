import { releaseCache, type Engine } from '../model/engine.js';
import { decode } from '../model/generate.js';
import { blendPrefill } from './blend.js';
import { memorySource, precomputeChunk } from './chunks.js';
import { attentionRequest } from './selection.js';
import type { BlendMode, BlendOptions, ChunkKvSource, DeviationMetric } from './types.js';

/**
 * How close each mode stays to full prefill on multi-chunk inputs: KL(full ‖ mode) of the first generated
 * token's distribution, and greedy agreement (share of the first n greedy tokens equal position by
 * position, each mode decoding on its own cache).
 */
export interface FidelityRow {
  mode: BlendMode;
  ratio: number | null;
  metric: DeviationMetric | null;
  /** Blend: the selection (strategy, attention source, sinks), e.g. `deviation`, `combined lookahead`. */
  selection: string | null;
  meanKl: number;
  meanAgreement: number;
  /** Mean share of context tokens recomputed. */
  meanRecomputedShare: number;
}

export function softmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) max = Math.max(max, x);
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += p[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < p.length; i++) p[i] /= sum;
  return p;
}

/** KL(p ‖ q) in nats from logits. */
export function klDivergence(pLogits: Float32Array, qLogits: Float32Array): number {
  const p = softmax(pLogits);
  const q = softmax(qLogits);
  let kl = 0;
  for (let i = 0; i < p.length; i++) if (p[i] > 0) kl += p[i] * Math.log(p[i] / Math.max(q[i], 1e-300));
  return kl;
}

export async function measureFidelity(
  engine: Engine,
  sets: { chunks: string[]; question: string }[],
  opts: {
    ratios: number[];
    metrics: DeviationMetric[];
    agreementTokens: number;
    /** Other selections, each over `ratios` with metric K (deviation rows come from `metrics`). */
    selections?: Pick<BlendOptions, 'selection' | 'attention' | 'sinkTokens'>[];
  },
): Promise<FidelityRow[]> {
  const tok = engine.model.tokenizer;
  const prepared: { sources: ChunkKvSource[]; q: number[] }[] = [];
  for (const s of sets) {
    const sources = await Promise.all(
      s.chunks.map(async (c) => memorySource(await precomputeChunk(engine, tok.encode(c)))),
    );
    prepared.push({ sources, q: tok.encode(s.question) });
  }
  const n = opts.agreementTokens;
  const runMode = async (p: (typeof prepared)[number], o: BlendOptions) => {
    const { cache, prefill } = await blendPrefill(engine, p.sources, p.q, o, n);
    const { tokens } = await decode(engine, cache, prefill.firstTokenLogits, {
      maxTokens: n,
      stopAtEos: false,
    });
    releaseCache(cache);
    return { prefill, tokens };
  };
  const fulls = [];
  for (const p of prepared) fulls.push(await runMode(p, { mode: 'full' }));

  type Config = {
    o: BlendOptions;
    ratio: number | null;
    metric: DeviationMetric | null;
    selection: string | null;
  };
  const configs: Config[] = [{ o: { mode: 'reuse' }, ratio: null, metric: null, selection: null }];
  for (const metric of opts.metrics) {
    for (const ratio of opts.ratios) {
      const o: BlendOptions = { mode: 'blend', ratio, metric, selection: 'deviation' };
      configs.push({ o, ratio, metric, selection: 'deviation' });
    }
  }
  for (const sel of opts.selections ?? []) {
    const name = selectionName(sel);
    for (const ratio of opts.ratios) {
      configs.push({ o: { mode: 'blend', ratio, metric: 'k', ...sel }, ratio, metric: 'k', selection: name });
    }
  }
  const rows: FidelityRow[] = [];
  for (const c of configs) {
    let kl = 0;
    let agree = 0;
    let share = 0;
    for (let i = 0; i < prepared.length; i++) {
      const r = await runMode(prepared[i], c.o);
      kl += klDivergence(fulls[i].prefill.firstTokenLogits, r.prefill.firstTokenLogits);
      let same = 0;
      for (let t = 0; t < n; t++) if (r.tokens[t] === fulls[i].tokens[t]) same++;
      agree += same / n;
      share += r.prefill.recomputedTokens / r.prefill.contextTokens;
    }
    const k = prepared.length;
    rows.push({
      mode: c.o.mode,
      ratio: c.ratio,
      metric: c.metric,
      selection: c.selection,
      meanKl: kl / k,
      meanAgreement: agree / k,
      meanRecomputedShare: share / k,
    });
  }
  return rows;
}

/** A selection's name in tables: `combined`, `question lookahead`, `deviation +2 sinks`. */
export function selectionName(o: Pick<BlendOptions, 'selection' | 'attention' | 'sinkTokens'>): string {
  const strategy = o.selection ?? 'deviation';
  const lookahead = attentionRequest(strategy, o.attention) === 'lookahead' ? ' lookahead' : '';
  return `${strategy}${lookahead}${o.sinkTokens ? ` +${o.sinkTokens} sinks` : ''}`;
}
