/**
 * Retrieval's public interface: the per-process ranking index kept current from the corpus change log,
 * and the retriever that picks the chunks that fit a query's context budget.
 */
export { CorpusIndex, type RankedChunk } from './corpus-index.js';
export { CorpusSync } from './corpus-sync.js';
export { Retriever, type RetrieveRequest, type Retrieved } from './retriever.js';
export { selectChunks, type Candidate, type ChunkOrder, type Selection } from './select.js';
export { matchPrompt, type MatchedPrompt } from './match-prompt.js';
export { ANCHOR_CHARS, SpanMatcher, type ChunkSpan, type MatchableChunk } from './span-matcher.js';
