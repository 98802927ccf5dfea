/**
 * `explain: true` on a query: the context's tokens as text and which of them the prefill recomputed, so a
 * client (the playground page) can show blend's selection against full (all) and reuse (none).
 */
import type { BlendPrefill } from '../blend/index.js';
import type { ExplainedContext } from '../queue/contracts.js';
import type { Tokenizer } from '../model/types.js';

/**
 * One chunk's tokens as text: each piece is what its token adds to the decoded text of the tokens before
 * it, so word-leading spaces that decoding a token alone would drop are kept, and the pieces join to the
 * chunk's decoded text. A character spread over several byte tokens belongs to the token that completes
 * it (the ones before read as ''): until then the decoded run ends in U+FFFD.
 */
export function tokenPieces(tok: Tokenizer, ids: readonly number[]): string[] {
  const pieces: string[] = [];
  let before = '';
  for (let i = 0; i < ids.length; i++) {
    const upTo = tok.decode(ids.slice(0, i + 1));
    if (upTo.endsWith('\uFFFD') && i < ids.length - 1) {
      pieces.push('');
      continue;
    }
    pieces.push(upTo.startsWith(before) ? upTo.slice(before.length) : tok.decode([ids[i]]));
    before = upTo;
  }
  return pieces;
}

/**
 * Blend reports its selection at the check layer (prompt rows, row 0 BOS, the context after the template
 * prefix); the other modes recompute a tail of the context (all of it for full, none for reuse).
 */
export function recomputedContext(prefill: BlendPrefill): number[] {
  const start = 1 + prefill.prefixTokens;
  if (prefill.selected?.length) return Array.from(prefill.selected[0], (row) => row - start);
  const n = prefill.recomputedTokens;
  return Array.from({ length: n }, (_, i) => prefill.contextTokens - n + i);
}

export function explainContext(
  tok: Tokenizer,
  chunks: readonly (readonly number[])[],
  prefill: BlendPrefill,
): ExplainedContext {
  return { chunks: chunks.map((ids) => tokenPieces(tok, ids)), recomputed: recomputedContext(prefill) };
}
