/** Handlers of the text thread (see text.ts): the model's tokenizer and fingerprint, nothing else kept. */
import type { ModelSourceSettings } from '../config/index.js';
import { loadModel } from '../model/load.js';
import { renderFrame, type PromptFrame, type PromptSpec } from '../model/template.js';
import { planChunkTexts, planFrame, planMatched, type PlannedPrompt } from '../inference/prompt-plan.js';
import type { BlendChunkRef } from '../queue/contracts.js';
import { splitDocument, type DocumentText, type MatchedText, type TextChunk } from './text.js';

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
    async planFrame(spec: PromptSpec, salt: string, questionField: string): Promise<PlannedPrompt> {
      return planFrame(tokenizer, fingerprint, spec, salt, questionField);
    },
    async planChunkTexts(texts: string[], salt: string): Promise<BlendChunkRef[]> {
      return planChunkTexts(tokenizer, fingerprint, texts, salt);
    },
    async planMatched(m: MatchedText, salt: string, questionField: string): Promise<PlannedPrompt> {
      return planMatched(tokenizer, fingerprint, m, salt, questionField);
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
