/** Handlers of the text thread (see text.ts): the model's tokenizer and fingerprint, nothing else kept. */
import type { ModelSourceSettings } from '../config/index.js';
import { loadModel } from '../model/load.js';
import { splitDocument, type DocumentText, type TextChunk } from './text.js';

export interface TextThreadInit {
  model: string;
  modelSource: ModelSourceSettings;
}

export async function createHandlers(init: TextThreadInit) {
  const { tokenizer, fingerprint } = await loadModel(init.model, init.modelSource);
  return {
    async info(): Promise<{ fingerprint: string }> {
      return { fingerprint };
    },
    async chunkDocument(input: DocumentText, budget: number): Promise<TextChunk[]> {
      return splitDocument(tokenizer, input, budget);
    },
  };
}

export type TextHandlers = Awaited<ReturnType<typeof createHandlers>>;
