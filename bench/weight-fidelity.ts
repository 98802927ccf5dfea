import { blendPrefill, tokenIdsOnly } from '../core/blend/index.js';
import { Engine, releaseCache } from '../core/model/engine.js';
import { argmax } from '../core/model/generate.js';
import type { LoadedModel } from '../core/model/types.js';
import type { WeightFormat } from '../core/model/weights/format.js';
import { storySets } from './common.js';

/** KL(P || Q) of the softmaxes of two logit vectors. */
function kl(p: Float32Array, q: Float32Array): number {
  const soft = (a: Float32Array) => {
    let m = -Infinity;
    for (const x of a) m = Math.max(m, x);
    const e = Float64Array.from(a, (x) => Math.exp(x - m));
    const s = e.reduce((x, y) => x + y, 0);
    return e.map((x) => x / s);
  };
  const P = soft(p);
  const Q = soft(q);
  let k = 0;
  for (let i = 0; i < P.length; i++) if (P[i] > 0) k += P[i] * Math.log(P[i] / Math.max(Q[i], 1e-30));
  return k;
}

/** First-token logits and 16 greedy tokens of every story set, full prefill, with one weight format. */
async function answers(model: LoadedModel, weights: WeightFormat) {
  const engine = await Engine.create(model, { threads: 1, weights });
  const tok = model.tokenizer;
  const out: { first: Float32Array; tokens: number[] }[] = [];
  for (const set of storySets()) {
    const chunks = set.chunks.map((c) => tokenIdsOnly(tok.encode(c)));
    const { cache, prefill } = await blendPrefill(engine, chunks, tok.encode(set.question), { mode: 'full' });
    const logits = prefill.firstTokenLogits;
    const first = logits.slice();
    const tokens = [argmax(logits)];
    for (let i = 1; i < 16; i++) tokens.push(argmax(await engine.forward(cache, [tokens[i - 1]])));
    releaseCache(cache);
    out.push({ first, tokens });
  }
  await engine.dispose();
  return out;
}

/**
 * How far each weight format's answers are from fp32's and from fp16's on stories260K's story sets: mean
 * KL of the first token's distribution and greedy agreement over 16 tokens, full prefill.
 */
export async function weightFidelity(model: LoadedModel) {
  const by = new Map<WeightFormat, Awaited<ReturnType<typeof answers>>>();
  for (const w of ['fp32', 'fp16', 'q4', 'q8'] as const) by.set(w, await answers(model, w));
  const rows: { weights: WeightFormat; reference: WeightFormat; meanKl: number; meanAgreement: number }[] =
    [];
  for (const [weights, reference] of [
    ['fp16', 'fp32'],
    ['q4', 'fp32'],
    ['q4', 'fp16'],
    ['q8', 'fp32'],
    ['q8', 'fp16'],
  ] as const) {
    const a = by.get(reference)!;
    const b = by.get(weights)!;
    const meanKl = a.reduce((s, x, i) => s + kl(x.first, b[i].first), 0) / a.length;
    const agree = a.map((x, i) => x.tokens.filter((t, j) => t === b[i].tokens[j]).length / x.tokens.length);
    rows.push({ weights, reference, meanKl, meanAgreement: agree.reduce((s, x) => s + x, 0) / agree.length });
  }
  return rows;
}
