/**
 * Which ranked chunks go into the prompt: the best that fit the context budget, optionally no more than
 * topK, then put in document order (or kept in relevance order).
 */

export interface Candidate {
  document: string;
  index: number;
  key: string;
  tokens: number;
  score: number;
  /** Rank in document order: the order of the request's documents, then chunk index. */
  order: number;
}

export type ChunkOrder = 'document' | 'relevance';

export interface Selection {
  used: Candidate[];
  leftOut: number;
}

/**
 * Take candidates by score (ties: document order), skipping any that would overflow the budget so smaller
 * ones further down can still fill it, until topK are taken; return them in the requested order.
 */
export function selectChunks(
  candidates: readonly Candidate[],
  budget: number,
  opts: { retrievalTopK?: number; order: ChunkOrder },
): Selection {
  const ranked = [...candidates].sort((a, b) => b.score - a.score || a.order - b.order);
  const used: Candidate[] = [];
  let room = budget;
  for (const c of ranked) {
    if (opts.retrievalTopK !== undefined && used.length >= opts.retrievalTopK) break;
    if (c.tokens > room) continue;
    used.push(c);
    room -= c.tokens;
  }
  if (opts.order === 'document') used.sort((a, b) => a.order - b.order);
  return { used, leftOut: candidates.length - used.length };
}
