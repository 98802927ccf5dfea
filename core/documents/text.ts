/**
 * Turning a document into chunks of token ids, and the model identity the API and the batch command need
 * for it: the fingerprint (chunk keys) and chunking + tokenization. Tokenizing a large document takes a
 * while (llama2.c's BPE is quadratic in the length of what it encodes), so processes that serve HTTP or
 * renew BullMQ locks run it on a thread of its own (`startTextThread`); `localIdentity` runs it in place.
 */
import { InvalidArgumentError, TooLargeError } from '../errors.js';
import { planChunkTexts, planFrame, planMatched, type PlannedPrompt } from '../inference/prompt-plan.js';
import { renderFrame, type PromptFrame, type PromptSpec } from '../model/template.js';
import type { BlendChunkRef, PromptSegment } from '../queue/contracts.js';
import type { LoadedModel, Tokenizer } from '../model/types.js';
import { InferenceThread } from '../runtime/inference-thread.js';
import { chunkText } from './chunker.js';
import type { TextHandlers, TextThreadInit } from './text-handlers.js';

export interface DocumentText {
  text?: string;
  chunks?: string[];
}

export interface TextChunk {
  text: string;
  tokenIds: number[];
}

/** A matched prompt's parts, as text where no stored chunk was found (see prompt-plan.ts `planMatched`). */
export interface MatchedText {
  template: 'none' | 'chat';
  segments: PromptSegment[];
  question: string;
}

export interface ModelIdentity {
  fingerprint: string;
  /** Positions the model has: prompt plus generated tokens must fit. */
  contextLength: number;
  /** The most characters one token stands for (Tokenizer.maxTokenChars): a length bound before encoding. */
  maxTokenChars: number;
  /**
   * Split `text` (or take `chunks` as given) and tokenize each chunk; InvalidArgumentError names the
   * field, TooLargeError (413) a given chunk over `budget` tokens.
   */
  chunkDocument(input: DocumentText, budget: number): Promise<TextChunk[]>;
  /** A prompt's frame, planned (core/inference/prompt-plan.ts `planFrame`) with this model's fingerprint. */
  planFrame(spec: PromptSpec, salt: string, questionField: string): Promise<PlannedPrompt>;
  /** Raw chunk texts as keyed chunk references (`planChunkTexts`). */
  planChunkTexts(texts: string[], salt: string): Promise<BlendChunkRef[]>;
  /** A matched prompt, planned (`planMatched`). */
  planMatched(m: MatchedText, salt: string, questionField: string): Promise<PlannedPrompt>;
  /** The prompt's template rendered around its question, as text (prefix and suffix). */
  render(spec: PromptSpec): Promise<PromptFrame>;
}

export function splitDocument(tok: Tokenizer, input: DocumentText, budget: number): TextChunk[] {
  if ((input.text === undefined) === (input.chunks === undefined)) {
    throw new InvalidArgumentError('text: give exactly one of text or chunks');
  }
  const field = input.text !== undefined ? 'text' : 'chunks';
  const texts = input.text !== undefined ? chunkText(input.text, tok, budget) : input.chunks!;
  if (texts.length === 0) throw new InvalidArgumentError(`${field}: has no tokens`);
  return texts.map((text, i) => {
    // Given chunks are measured before anything is stored: one over the budget is refused (a text is split).
    if (input.chunks && text.length > budget * tok.maxTokenChars) {
      throw new TooLargeError(
        `chunks.${i}: ${text.length} characters is more than the chunk budget of ${budget} tokens (CHUNK_TOKEN_BUDGET) can hold; split it or send it as text`,
      );
    }
    const tokenIds = tok.encode(text);
    if (tokenIds.length === 0) throw new InvalidArgumentError(`chunks.${i}: has no tokens`);
    if (tokenIds.length > budget) {
      throw new TooLargeError(
        `chunks.${i}: ${tokenIds.length} tokens is over the chunk budget of ${budget} (CHUNK_TOKEN_BUDGET); split it or send it as text`,
      );
    }
    return { text, tokenIds };
  });
}

/** Chunking in this thread (tests, tools). Keeps only the tokenizer, fingerprint and context length. */
export function localIdentity(
  model: Pick<LoadedModel, 'tokenizer' | 'fingerprint' | 'config'>,
): ModelIdentity {
  const { tokenizer, fingerprint } = model;
  return {
    fingerprint,
    contextLength: model.config.maxPositionEmbeddings,
    maxTokenChars: tokenizer.maxTokenChars,
    chunkDocument: async (input, budget) => splitDocument(tokenizer, input, budget),
    planFrame: async (spec, salt, field) => planFrame(tokenizer, fingerprint, spec, salt, field),
    planChunkTexts: async (texts, salt) => planChunkTexts(tokenizer, fingerprint, texts, salt),
    planMatched: async (m, salt, field) => planMatched(tokenizer, fingerprint, m, salt, field),
    render: async (spec) => renderFrame(tokenizer, spec),
  };
}

const HANDLERS_URL = new URL(
  import.meta.url.endsWith('.ts') ? './text-handlers.ts' : './text-handlers.js',
  import.meta.url,
);

/** A thread that loads the model's tokenizer and chunks documents; resolves once the model is loaded. */
export async function startTextThread(
  init: TextThreadInit,
): Promise<{ identity: ModelIdentity; close(): Promise<void> }> {
  const thread = await InferenceThread.start<TextHandlers>(HANDLERS_URL, init);
  try {
    const { fingerprint, contextLength, maxTokenChars } = await thread.call('info', []);
    return {
      identity: {
        fingerprint,
        contextLength,
        maxTokenChars,
        chunkDocument: (input, budget) => thread.call('chunkDocument', [input, budget]),
        planFrame: (spec, salt, field) => thread.call('planFrame', [spec, salt, field]),
        planChunkTexts: (texts, salt) => thread.call('planChunkTexts', [texts, salt]),
        planMatched: (m, salt, field) => thread.call('planMatched', [m, salt, field]),
        render: (spec) => thread.call('render', [spec]),
      },
      close: () => thread.terminate(),
    };
  } catch (err) {
    await thread.terminate();
    throw err;
  }
}
