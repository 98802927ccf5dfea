/**
 * Automatic chunk matching: a prompt that holds a tenant's ingested chunks anywhere in its text (pasted by
 * LangChain, LlamaIndex, any client; in the system prompt or the user's message) is split at them. The
 * prompt comes as pieces, each tokenized on its own as the template frame always is (the prefix: template
 * start, system prompt, earlier turns; the suffix: the question and the template's end). Every piece
 * becomes segments — each chunk found with the token ids it was precomputed with, so its cache applies,
 * and the text around chunks as ordinary segments — except the end of the last piece after its last
 * chunk, which stays the question.
 */
import type { DocumentService } from '../documents/documents.js';
import type { MatchSummary, PromptSegment } from '../queue/contracts.js';
import type { CorpusSync } from './corpus-sync.js';
import type { ChunkSpan } from './span-matcher.js';

export interface MatchedPrompt {
  segments: PromptSegment[];
  /** The text after the last chunk found in the last piece (all of it when none was found there). */
  question: string;
  matched: MatchSummary;
}

/** `text` cut at `spans` into segments, up to `end` (chunks as references, the rest as text). */
function cut(text: string, spans: ChunkSpan[], end: number, tokens: Map<string, number[]>): PromptSegment[] {
  const segments: PromptSegment[] = [];
  let at = 0;
  for (const s of spans) {
    if (s.start > at) segments.push({ text: text.slice(at, s.start) });
    segments.push({ key: s.chunk.key, tokenIds: tokens.get(s.chunk.key)! });
    at = s.end;
  }
  if (end > at) segments.push({ text: text.slice(at, end) });
  return segments;
}

/** Split the pieces at the spans whose chunks still have token records; null when none is left. */
function split(pieces: string[], spans: ChunkSpan[][], tokens: Map<string, number[]>): MatchedPrompt | null {
  const found = spans.map((list) => list.filter((s) => tokens.has(s.chunk.key)));
  const last = pieces.length - 1;
  const tail = found[last];
  // The question must keep some text: a prompt ending in a chunk keeps that chunk in the question.
  if (tail.length && tail[tail.length - 1].end === pieces[last].length) tail.pop();
  if (found.every((list) => list.length === 0)) return null;
  const questionAt = tail.length ? tail[tail.length - 1].end : 0;
  const segments = pieces.flatMap((text, i) =>
    cut(text, found[i], i === last ? questionAt : text.length, tokens),
  );
  const chunks = found.flat().map((s) => ({
    document: s.chunk.document,
    index: s.chunk.index,
    tokens: tokens.get(s.chunk.key)!.length,
  }));
  return {
    segments,
    question: pieces[last].slice(questionAt),
    matched: { chunks, tokens: chunks.reduce((a, c) => a + c.tokens, 0) },
  };
}

/**
 * The tenant's stored chunks found in the prompt's pieces (the last one holds the question), or null when
 * they hold none (the prompt is used as it is).
 */
export async function matchPrompt(
  docs: DocumentService,
  sync: CorpusSync,
  tenant: string,
  pieces: string[],
  readyWaitMs: number,
): Promise<MatchedPrompt | null> {
  await sync.whenReady(readyWaitMs);
  const spans = pieces.map((p) => sync.index.spans.match(tenant, p));
  if (spans.every((list) => list.length === 0)) return null;
  const keys = new Set(spans.flat().map((s) => s.chunk.key));
  return split(pieces, spans, await docs.tokensOf([...keys]));
}
