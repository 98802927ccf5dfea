/**
 * Turning a document into chunks of token ids, and the model identity the API and the batch command need
 * for it: the fingerprint (chunk keys) and chunking + tokenization. Tokenizing a large document takes a
 * while (llama2.c's BPE is quadratic in the length of what it encodes), so processes that serve HTTP or
 * renew BullMQ locks run it on a thread of its own (`startTextThread`); `localIdentity` runs it in place.
 */
import { invalidField, tooLargeField } from '../errors.js';
import { frameIds, renderFrame, type PromptFrame, type PromptSpec } from '../model/template.js';
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

/** A prompt's frame as token counts: what the template and the question take of the context. */
export interface FrameSize {
  template: 'none' | 'chat' | 'jinja';
  prefixTokens: number;
  suffixTokens: number;
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
  /** Tokens in `text`, or null when it surely has more than `limit` (refused by length, never encoded). */
  countTokens(text: string, limit: number): Promise<number | null>;
  /** Render and tokenize a prompt's template around its question (see core/model/template.ts). */
  frame(spec: PromptSpec): Promise<FrameSize>;
  /** The prompt's template rendered around its question, as text (prefix and suffix). */
  render(spec: PromptSpec): Promise<PromptFrame>;
}

/** Tokens in `text`, or null when its length alone proves more than `limit` (cheap, before encoding). */
export function countTokens(tok: Tokenizer, text: string, limit: number): number | null {
  if (text.length > limit * tok.maxTokenChars) return null;
  return tok.encode(text).length;
}

export function frameSize(tok: Tokenizer, spec: PromptSpec): FrameSize {
  const f = frameIds(tok, spec);
  return { template: f.template, prefixTokens: f.prefixIds.length, suffixTokens: f.suffixIds.length };
}

export function splitDocument(tok: Tokenizer, input: DocumentText, budget: number): TextChunk[] {
  if ((input.text === undefined) === (input.chunks === undefined)) {
    throw invalidField('text', 'give exactly one of text or chunks');
  }
  const field = input.text !== undefined ? 'text' : 'chunks';
  const texts = input.text !== undefined ? chunkText(input.text, tok, budget) : input.chunks!;
  if (texts.length === 0) throw invalidField(field, 'has no tokens');
  return texts.map((text, i) => {
    // Given chunks are measured before anything is stored: one over the budget is refused (a text is split).
    if (input.chunks && text.length > budget * tok.maxTokenChars) {
      throw tooLargeField(
        `chunks.${i}`,
        `${text.length} characters is more than the chunk budget of ${budget} tokens (CHUNK_TOKEN_BUDGET) can hold; split it or send it as text`,
      );
    }
    const tokenIds = tok.encode(text);
    if (tokenIds.length === 0) throw invalidField(`chunks.${i}`, 'has no tokens');
    if (tokenIds.length > budget) {
      throw tooLargeField(
        `chunks.${i}`,
        `${tokenIds.length} tokens is over the chunk budget of ${budget} (CHUNK_TOKEN_BUDGET); split it or send it as text`,
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
    countTokens: async (text, limit) => countTokens(tokenizer, text, limit),
    frame: async (spec) => frameSize(tokenizer, spec),
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
        countTokens: (text, limit) => thread.call('countTokens', [text, limit]),
        frame: (spec) => thread.call('frame', [spec]),
        render: (spec) => thread.call('render', [spec]),
      },
      close: () => thread.terminate(),
    };
  } catch (err) {
    await thread.terminate();
    throw err;
  }
}
