/**
 * One answer: prefill in the requested mode over the prompt's caches, then decoding, with the answer's text
 * built as tokens arrive. The CLI (`cacheblend generate`) and the blend worker both answer through it, so
 * the same chunks, question, mode and ratio give the same answer in both.
 */
import { blendPrefill, type BlendOptions, type BlendPrefill, type ChunkKvSource } from '../blend/index.js';
import { layoutPrompt } from '../blend/steps.js';
import { releaseCache, type Engine } from '../model/engine.js';
import { decode, type FinishReason, type SamplingOptions, type TokenLogprob } from '../model/generate.js';
import { AnswerText } from './answer-text.js';

/** What a prompt is built from: the template prefix's cache, the chunks' caches, the suffix's ids. */
export interface PromptParts {
  prefix: ChunkKvSource | null;
  chunks: readonly ChunkKvSource[];
  suffixIds: readonly number[];
}

export interface DecodeOptions extends SamplingOptions {
  /** Stop when the answer's text holds one of these; the answer ends before it. */
  stop?: string[];
}

export interface BlendAnswer {
  prefill: BlendPrefill;
  tokens: number[];
  /** The answer's text (before any stop sequence). */
  text: string;
  finishReason: FinishReason;
  /** Prefill start → last token, ms. */
  totalMs: number;
  /** Decoding only, ms. */
  decodeMs: number;
  /** Per generated token, when the sampling options asked for logprobs. */
  logprobs?: TokenLogprob[];
}

/**
 * Prefill in the requested mode over the prompt's caches, then decode; `onText` sees the answer's text that
 * can be streamed so far, each time it grows.
 */
export async function blendAndDecode(
  engine: Engine,
  parts: PromptParts,
  opts: BlendOptions,
  sampling: DecodeOptions,
  onText?: (streamable: string) => void,
): Promise<BlendAnswer> {
  const t0 = performance.now();
  const { cache, prefill } = await blendPrefill(
    engine,
    parts.chunks,
    parts.suffixIds,
    opts,
    sampling.maxTokens,
    parts.prefix,
  );
  const answer = new AnswerText(
    engine.model.tokenizer,
    layoutPrompt(engine.config.bosTokenId, parts.chunks, parts.suffixIds, parts.prefix).promptIds,
    sampling.stop?.filter((s) => s !== '') ?? [],
  );
  try {
    const { tokens, finishReason, decodeMs, logprobs } = await decode(
      engine,
      cache,
      prefill.firstTokenLogits,
      sampling,
      (id) => {
        const stopped = answer.push(id);
        onText?.(answer.streamable());
        return stopped;
      },
    );
    const totalMs = performance.now() - t0;
    return {
      prefill,
      tokens,
      text: answer.text,
      finishReason,
      totalMs,
      decodeMs,
      ...(logprobs && { logprobs }),
    };
  } finally {
    releaseCache(cache); // a device cache's GPU buffers go now, not when the garbage collector runs
  }
}
