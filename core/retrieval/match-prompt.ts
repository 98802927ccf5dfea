/**
 * Automatic chunk matching: a prompt that holds a tenant's ingested chunks anywhere in its text (pasted by
 * LangChain, LlamaIndex, any client) is split at them. The text up to the end of the last chunk found
 * becomes segments — each chunk with the token ids it was precomputed with, so its cache applies, and the
 * text between chunks as ordinary segments — and what follows the last chunk stays the question.
 */
import type { DocumentService } from '../documents/documents.js';
import type { MatchSummary, PromptSegment } from '../queue/contracts.js';
import type { CorpusSync } from './corpus-sync.js';
import type { ChunkSpan } from './span-matcher.js';

export interface MatchedPrompt {
  segments: PromptSegment[];
  /** The text after the last chunk found: the new question. */
  question: string;
  matched: MatchSummary;
}

/** Split `text` at the spans whose chunks still have token records; null when none is left. */
function split(text: string, spans: ChunkSpan[], tokens: Map<string, number[]>): MatchedPrompt | null {
  const found = spans.filter((s) => tokens.has(s.chunk.key));
  // The question must keep some text: a prompt ending in a chunk keeps that chunk in the question.
  if (found.length && found[found.length - 1].end === text.length) found.pop();
  if (found.length === 0) return null;
  const segments: PromptSegment[] = [];
  let at = 0;
  for (const s of found) {
    if (s.start > at) segments.push({ text: text.slice(at, s.start) });
    segments.push({ key: s.chunk.key, tokenIds: tokens.get(s.chunk.key)! });
    at = s.end;
  }
  const chunks = found.map((s) => ({
    document: s.chunk.document,
    index: s.chunk.index,
    tokens: tokens.get(s.chunk.key)!.length,
  }));
  return {
    segments,
    question: text.slice(at),
    matched: { chunks, tokens: chunks.reduce((a, c) => a + c.tokens, 0) },
  };
}

/** The tenant's stored chunks found in `text`, or null when it holds none (the prompt is used as it is). */
export async function matchPrompt(
  docs: DocumentService,
  sync: CorpusSync,
  tenant: string,
  text: string,
  readyWaitMs: number,
): Promise<MatchedPrompt | null> {
  await sync.whenReady(readyWaitMs);
  const spans = sync.index.spans.match(tenant, text);
  if (spans.length === 0) return null;
  return split(text, spans, await docs.tokensOf([...new Set(spans.map((s) => s.chunk.key))]));
}
