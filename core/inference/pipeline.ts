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
  type ChunkCacheData,
  type BlendOptions,
  type BlendPrefill,
  type ChunkKvSource,
} from '../blend/index.js';
import { decodeChunkKv, encodeChunkKv, type KvDtype } from '../kv/format.js';
import type { Engine } from '../model/engine.js';
import { decode, type SamplingOptions } from '../model/generate.js';
import type { Tokenizer } from '../model/types.js';
import { InvalidArgumentError } from '../errors.js';

/** Encode a precomputed chunk cache in the stored object format. */
export function encodeChunkCache(engine: Engine, data: ChunkCacheData, dtype: KvDtype): Buffer {
  return encodeChunkKv(
    {
      ...data,
      fingerprint: engine.model.fingerprint,
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
  throw new InvalidArgumentError(
    `${field}: the prompt (${promptTokens} tokens) plus maxTokens (${maxTokens}) exceeds the model's context of ${contextLength} tokens`,
  );
}

/** The generated text: decode(prompt + generated) minus decode(prompt), so merges across the seam count. */
export function answerText(
  tok: Tokenizer,
  promptIds: readonly number[],
  generated: readonly number[],
): string {
  return tok.decode([...promptIds, ...generated]).slice(tok.decode(promptIds).length);
}

/** BOS + every chunk's ids + the question's ids: the prompt every mode builds. */
export function promptIds(
  bos: number,
  chunks: readonly ChunkKvSource[],
  questionIds: readonly number[],
): number[] {
  return [bos, ...chunks.flatMap((c) => c.tokenIds), ...questionIds];
}

export interface BlendAnswer {
  prefill: BlendPrefill;
  tokens: number[];
  /** Prefill start → last token, ms. */
  totalMs: number;
  /** Decoding only, ms. */
  decodeMs: number;
}

/** Prefill in the requested mode over the chunk caches, then decode; `onToken` sees each new token. */
export async function blendAndDecode(
  engine: Engine,
  chunks: readonly ChunkKvSource[],
  questionIds: readonly number[],
  opts: BlendOptions,
  sampling: SamplingOptions,
  onToken?: (id: number) => void,
): Promise<BlendAnswer> {
  const t0 = performance.now();
  const { cache, prefill } = await blendPrefill(engine, chunks, questionIds, opts, sampling.maxTokens);
  const { tokens, decodeMs } = await decode(engine, cache, prefill.firstTokenLogits, sampling, onToken);
  return { prefill, tokens, totalMs: performance.now() - t0, decodeMs };
}
