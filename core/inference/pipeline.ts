/**
 * The pieces the CLI (`cacheblend generate --chunk … --question …`) and the blend worker share, so that
 * for the same chunks, question, mode and ratio both produce the same answer: a chunk's cache as the
 * service stores it (precomputed, encoded in the KV dtype, decoded back), prefill + decoding, and the
 * answer's text reconstruction.
 */
import {
  blendPrefill,
  memorySource,
  precomputeChunk,
  precomputeChunks,
  type ChunkCacheData,
  type BlendOptions,
  type BlendPrefill,
  type ChunkKvSource,
} from '../blend/index.js';
import { decodeChunkKv, encodeChunkKv, type KvDtype } from '../kv/format.js';
import { releaseCache, type Engine } from '../model/engine.js';
import { decode, type FinishReason, type SamplingOptions, type TokenLogprob } from '../model/generate.js';
import type { Tokenizer } from '../model/types.js';
import type { TextLogprob } from '../queue/contracts.js';
import { invalidField } from '../errors.js';

/** Encode a precomputed chunk cache in the stored object format. */
export function encodeChunkCache(engine: Engine, data: ChunkCacheData, dtype: KvDtype): Buffer {
  return encodeChunkKv(
    {
      ...data,
      fingerprint: engine.kvFingerprint,
      kvHeads: engine.config.numKvHeads,
      headDim: engine.config.headDim,
    },
    dtype,
  );
}

/** Precompute a chunk and encode it: exactly the bytes the precompute worker stores. */
export async function computeChunkObject(
  engine: Engine,
  ids: readonly number[],
  dtype: KvDtype,
): Promise<Buffer> {
  return encodeChunkCache(engine, await precomputeChunk(engine, ids), dtype);
}

/** Several chunks' encoded objects; a device-resident engine computes them in batches. */
export async function computeChunkObjects(
  engine: Engine,
  ids: readonly (readonly number[])[],
  dtype: KvDtype,
): Promise<Buffer[]> {
  return (await precomputeChunks(engine, ids)).map((data) => encodeChunkCache(engine, data, dtype));
}

/** A chunk's cache as the service would hold it: precomputed, then encoded and decoded in `dtype`. */
export async function storedChunk(engine: Engine, ids: number[], dtype: KvDtype): Promise<ChunkKvSource> {
  const data = await precomputeChunk(engine, ids);
  const { kv } = decodeChunkKv(encodeChunkCache(engine, data, dtype));
  return memorySource({ ...data, keys: kv.keys, values: kv.values });
}

/**
 * The one context-length rule the service and the CLI share: the prompt plus the tokens to generate must
 * fit the model's positions. The message names `promptField` (what the caller can shorten) when the
 * prompt alone is too long, else `maxTokensField`.
 */
export function checkContextFits(
  promptTokens: number,
  maxTokens: number,
  contextLength: number,
  fields: { prompt: string; maxTokens: string },
): void {
  if (promptTokens + maxTokens <= contextLength) return;
  const field = promptTokens > contextLength ? fields.prompt : fields.maxTokens;
  throw invalidField(
    field,
    `the prompt (${promptTokens} tokens) plus maxTokens (${maxTokens}) exceeds the model's context of ${contextLength} tokens`,
  );
}

/** Prompt tokens kept before the generated ones when decoding the answer, so merges across the seam count. */
const SEAM_TOKENS = 32;

/**
 * The answer's text as tokens arrive: decode(tail of the prompt + generated) minus decode(tail), cut before
 * the first stop sequence. `streamable` is the part that can be sent already: no trailing partial UTF-8
 * character, and no tail that might still grow into a stop sequence.
 */
export class AnswerText {
  private readonly seam: number[];
  private readonly base: number;
  private readonly generated: number[] = [];
  private raw = '';
  /** Set once a stop sequence appears: the answer ends before it. */
  stopped = false;

  constructor(
    private readonly tok: Tokenizer,
    prompt: readonly number[],
    private readonly stop: readonly string[] = [],
  ) {
    this.seam = prompt.slice(-SEAM_TOKENS);
    this.base = tok.decode(this.seam).length;
  }

  /** Add a generated token; true when the text now holds a stop sequence. */
  push(id: number): boolean {
    this.generated.push(id);
    this.raw = this.tok.decode([...this.seam, ...this.generated]).slice(this.base);
    const at = Math.min(...this.stop.map((s) => this.raw.indexOf(s)).filter((i) => i >= 0));
    if (Number.isFinite(at)) {
      this.raw = this.raw.slice(0, at);
      this.stopped = true;
    }
    return this.stopped;
  }

  get text(): string {
    return this.raw;
  }

  streamable(): string {
    let t = this.raw.replace(/\uFFFD+$/, '');
    if (this.stopped) return t;
    for (const s of this.stop) {
      for (let k = Math.min(s.length - 1, t.length); k > 0; k--) {
        if (t.endsWith(s.slice(0, k))) {
          t = t.slice(0, t.length - k);
          break;
        }
      }
    }
    return t;
  }
}

/** What a prompt is built from: the template prefix's cache, the chunks' caches, the suffix's ids. */
export interface PromptParts {
  prefix: ChunkKvSource | null;
  chunks: readonly ChunkKvSource[];
  suffixIds: readonly number[];
}

/** BOS + the prefix's ids + every chunk's ids + the suffix's ids: the prompt every mode builds. */
export function promptIds(bos: number, parts: PromptParts): number[] {
  return [
    bos,
    ...(parts.prefix?.tokenIds ?? []),
    ...parts.chunks.flatMap((c) => c.tokenIds),
    ...parts.suffixIds,
  ];
}

/** Tokens of the prompt `parts` make: BOS + prefix + chunks + suffix. */
export function promptLength(prefix: number, chunks: readonly { length: number }[], suffix: number): number {
  return 1 + prefix + chunks.reduce((a, c) => a + c.length, 0) + suffix;
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
    promptIds(engine.config.bosTokenId, parts),
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

/** Tokens before a generated one that its text is decoded after (so a leading space or merge shows). */
const TOKEN_SEAM = 4;

/**
 * Logprobs with each token as the text it adds after the tokens before it (prompt tail + generated so
 * far): decode(seam + id) minus decode(seam), the same difference the answer's text is built from.
 */
export function logprobTexts(
  tok: Tokenizer,
  prompt: readonly number[],
  generated: readonly number[],
  logprobs: readonly TokenLogprob[],
): TextLogprob[] {
  const ids = [...prompt.slice(-TOKEN_SEAM), ...generated];
  const seamAt = Math.min(prompt.length, TOKEN_SEAM);
  return logprobs.map((lp, i) => {
    const seam = ids.slice(Math.max(0, seamAt + i - TOKEN_SEAM), seamAt + i);
    const base = tok.decode(seam).length;
    const text = (id: number) => tok.decode([...seam, id]).slice(base);
    return {
      token: text(lp.id),
      logprob: lp.logprob,
      top: lp.top.map((t) => ({ token: text(t.id), logprob: t.logprob })),
    };
  });
}
