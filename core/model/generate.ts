import { InvalidArgumentError, invalidOption } from '../errors.js';
import { releaseCache, type Engine, type SequenceCache } from './engine.js';

export interface SamplingOptions {
  maxTokens: number;
  /** 0 means greedy (argmax). */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Stop when the model emits one of its end tokens (default true). */
  stopAtEos?: boolean;
  /** Record each generated token's log-probability and this many most likely alternatives (0–20). */
  logprobs?: number;
}

/** A generated token's log-probability under the model (log-softmax of its raw logits, no temperature). */
export interface TokenLogprob {
  id: number;
  logprob: number;
  /** The most likely tokens at that step, most likely first. */
  top: { id: number; logprob: number }[];
}

/** Why decoding ended: an end token or a stop condition (`stop`), or the token budget (`length`). */
export type FinishReason = 'stop' | 'length';

export interface DecodeResult {
  tokens: number[];
  finishReason: FinishReason;
  /** Wall time of each generated token after the first, ms. */
  decodeMs: number;
  /** One per generated token, when SamplingOptions.logprobs is set. */
  logprobs?: TokenLogprob[];
}

/** log-softmax of `logits` at `id`, and the `k` largest entries' (computed in float64). */
export function tokenLogprob(logits: Float32Array, id: number, k: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const norm = max + Math.log(sum);
  const top: { id: number; logprob: number }[] = [];
  if (k > 0) {
    const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
    for (const i of order.slice(0, k)) top.push({ id: i, logprob: logits[i] - norm });
  }
  return { id, logprob: logits[id] - norm, top };
}

export function argmax(logits: Float32Array, offset = 0, n = logits.length - offset): number {
  let best = offset;
  for (let i = offset + 1; i < offset + n; i++) if (logits[i] > logits[best]) best = i;
  return best - offset;
}

/** mulberry32: small, seedable, good enough for sampling reproducibly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function validateSampling(o: SamplingOptions): void {
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 0)
    throw invalidOption('maxTokens', 'must be an integer >= 0');
  if (o.temperature !== undefined && !(o.temperature >= 0))
    throw invalidOption('temperature', 'must be >= 0');
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 1))
    throw invalidOption('topK', 'must be an integer >= 1');
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw invalidOption('topP', 'must be in (0, 1]');
  if (o.logprobs !== undefined && !(Number.isInteger(o.logprobs) && o.logprobs >= 0 && o.logprobs <= 20))
    throw invalidOption('logprobs', 'must be an integer in [0, 20]');
}

/** Pick the next token from one row of logits: argmax, or temperature/top-k/top-p sampling. */
export function sampleToken(logits: Float32Array, o: SamplingOptions, rand: () => number): number {
  const temperature = o.temperature ?? 0;
  if (temperature === 0) return argmax(logits);
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
  const k = Math.min(o.topK ?? order.length, order.length);
  const max = logits[order[0]];
  const probs = order.slice(0, k).map((i) => Math.exp((logits[i] - max) / temperature));
  const total = probs.reduce((a, b) => a + b, 0);
  let kept = probs.length;
  if (o.topP !== undefined && o.topP < 1) {
    let cum = 0;
    for (let i = 0; i < probs.length; i++) {
      cum += probs[i] / total;
      if (cum >= o.topP) {
        kept = i + 1;
        break;
      }
    }
  }
  const mass = probs.slice(0, kept).reduce((a, b) => a + b, 0);
  let r = rand() * mass;
  for (let i = 0; i < kept; i++) {
    r -= probs[i];
    if (r <= 0) return order[i];
  }
  return order[kept - 1];
}

/**
 * Continue from a cache whose last row's logits are `firstLogits`: pick a token, feed it back through the
 * engine (only the new row's K/V come back and are appended), repeat. Shared by every mode. `onToken` sees
 * each new token and may return true to stop there (a stop sequence was generated). Greedy decoding on a
 * device-resident engine takes several tokens per GPU run (Engine.decodeGreedy); the tokens, and where
 * decoding stops, are the same.
 */
export async function decode(
  engine: Engine,
  cache: SequenceCache,
  firstLogits: Float32Array,
  o: SamplingOptions,
  onToken?: (id: number) => boolean | void,
): Promise<DecodeResult> {
  validateSampling(o);
  const rand = seededRandom(o.seed ?? 0);
  const eos = new Set(engine.config.eosTokenIds);
  // Bursts of greedy tokens return no logits: with logprobs, every token comes from its own step.
  const greedy = (o.temperature ?? 0) === 0 && o.logprobs === undefined;
  const tokens: number[] = [];
  const logprobs: TokenLogprob[] | undefined = o.logprobs === undefined ? undefined : [];
  let pending: TokenLogprob | null = null;
  const pick = (logits: Float32Array): number => {
    const id = sampleToken(logits, o, rand);
    if (logprobs) pending = tokenLogprob(logits, id, o.logprobs!);
    return id;
  };
  const t0 = performance.now();
  let finishReason: FinishReason = 'length';
  /** Take one generated token; false when decoding ends with it (or before it). */
  const take = (id: number): boolean => {
    if ((o.stopAtEos ?? true) && eos.has(id)) {
      finishReason = 'stop';
      return false;
    }
    tokens.push(id);
    if (logprobs && pending) logprobs.push(pending);
    if (onToken?.(id) === true) {
      finishReason = 'stop';
      return false;
    }
    return tokens.length < o.maxTokens;
  };
  let next = o.maxTokens > 0 ? pick(firstLogits) : -1;
  while (next >= 0 && take(next)) {
    const burst = greedy ? await engine.decodeGreedy(cache, next, o.maxTokens - tokens.length) : null;
    if (burst) {
      // The cache now holds `next` and the burst but its last token, which goes in next time round.
      if (!burst.slice(0, -1).every(take)) break;
      next = burst[burst.length - 1];
      continue;
    }
    next = pick(await engine.forward(cache, [next]));
  }
  return { tokens, finishReason, decodeMs: performance.now() - t0, ...(logprobs && { logprobs }) };
}

export interface GenerateResult {
  promptTokens: number;
  tokens: number[];
  firstTokenLogits: Float32Array;
  ttftMs: number;
  totalMs: number;
}

/** Plain generation: prefill `promptIds` from scratch, then decode. */
export async function generate(
  engine: Engine,
  promptIds: readonly number[],
  o: SamplingOptions,
): Promise<GenerateResult> {
  if (promptIds.length === 0) throw new InvalidArgumentError('the prompt is empty');
  const t0 = performance.now();
  const cache = engine.newSequenceCache(promptIds.length + o.maxTokens);
  const first = await engine.forward(cache, promptIds);
  const ttftMs = performance.now() - t0;
  const { tokens } = await decode(engine, cache, first, o);
  releaseCache(cache);
  return {
    promptTokens: promptIds.length,
    tokens,
    firstTokenLogits: first,
    ttftMs,
    totalMs: performance.now() - t0,
  };
}
