/** Handlers of the text thread (see text.ts): the model's tokenizer and fingerprint, nothing else kept. */
import type { ModelSourceSettings } from '../config/index.js';
import { loadModel } from '../model/load.js';
import { renderFrame, type PromptFrame, type PromptSpec } from '../model/template.js';
import {
  countTokens,
  frameSize,
  splitDocument,
  type DocumentText,
  type FrameSize,
  type TextChunk,
} from './text.js';

export interface TextThreadInit {
  model: string;
  modelSource: ModelSourceSettings;
}

export async function createHandlers(init: TextThreadInit) {
  const { tokenizer, fingerprint, config } = await loadModel(init.model, init.modelSource);
  return {
    async info(): Promise<{ fingerprint: string; contextLength: number; maxTokenChars: number }> {
      return {
        fingerprint,
        contextLength: config.maxPositionEmbeddings,
        maxTokenChars: tokenizer.maxTokenChars,
      };
    },
    async countTokens(text: string, limit: number): Promise<number | null> {
      return countTokens(tokenizer, text, limit);
    },
    async frame(spec: PromptSpec): Promise<FrameSize> {
      return frameSize(tokenizer, spec);
    },
    async render(spec: PromptSpec): Promise<PromptFrame> {
      return renderFrame(tokenizer, spec);
    },
    async chunkDocument(input: DocumentText, budget: number): Promise<TextChunk[]> {
      return splitDocument(tokenizer, input, budget);
    },
  };
}

export type TextHandlers = Awaited<ReturnType<typeof createHandlers>>;
