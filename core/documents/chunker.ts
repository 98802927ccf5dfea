/**
 * Splits a document's text into chunks of at most `budget` tokens, breaking at paragraph boundaries first,
 * then at sentence boundaries, then between words, and only as a last resort inside a word. Every chunk is
 * a trimmed slice of the original text (inner whitespace and newlines are kept as written), and its token
 * count is checked by encoding the chunk on its own, exactly as the chunk is later tokenized.
 *
 * Cost stays close to one pass of the tokenizer over the text: only short pieces (sentences, words) are
 * encoded while splitting; pieces are packed by the sum of their counts, and each finished chunk is
 * encoded once more to confirm it fits (merges across a seam can change the count slightly; a chunk that
 * turns out too long is packed again from its pieces with exact counts).
 */
import { InvalidArgumentError } from '../errors.js';
import type { Tokenizer } from '../model/types.js';

interface Span {
  start: number;
  end: number;
}

interface Unit extends Span {
  /** Estimated tokens: exact for one piece, the sum of its pieces' counts for a whole paragraph. */
  tokens: number;
  /** The pieces a paragraph unit was built from (to re-pack it if needed). */
  parts?: Unit[];
}

const PARAGRAPH = /\n[ \t]*\n\s*/g;
const SENTENCE = /(?<=[.!?…][)"'’”\]]*)\s+/g;
const WORD = /\s+/g;
/** No token spans more characters than this; longer pieces are split before they are ever encoded. */
const MAX_CHARS_PER_TOKEN = 32;

/** Non-empty trimmed spans of text[start, end) between separators matched by `re` (separators dropped). */
function splitSpan(text: string, span: Span, re: RegExp): Span[] {
  const out: Span[] = [];
  const part = text.slice(span.start, span.end);
  let last = 0;
  for (const m of part.matchAll(re)) {
    if (m.index > last) out.push({ start: span.start + last, end: span.start + m.index });
    last = m.index + m[0].length;
  }
  if (last < part.length) out.push({ start: span.start + last, end: span.end });
  return out.map((s) => trimSpan(text, s)).filter((s) => s.end > s.start);
}

function trimSpan(text: string, s: Span): Span {
  let { start, end } = s;
  while (start < end && /\s/.test(text[start])) start++;
  while (end > start && /\s/.test(text[end - 1])) end--;
  return { start, end };
}

export function chunkText(text: string, tok: Tokenizer, budget: number): string[] {
  if (!Number.isInteger(budget) || budget < 1)
    throw new InvalidArgumentError('chunk token budget must be >= 1');
  const count = (s: Span) => tok.encode(text.slice(s.start, s.end)).length;
  const maxChars = budget * MAX_CHARS_PER_TOKEN;

  /** Pieces of `span` that each fit the budget, in order (level 0: sentences, 1: words, 2: characters). */
  const pieces = (span: Span, level: number, out: Unit[]) => {
    if (span.end - span.start <= maxChars) {
      const tokens = count(span);
      if (tokens <= budget) {
        out.push({ ...span, tokens });
        return;
      }
    }
    if (level < 2) {
      const parts = splitSpan(text, span, level === 0 ? SENTENCE : WORD);
      if (parts.length > 1) {
        for (const p of parts) pieces(p, level + 1, out);
        return;
      }
      pieces(span, level + 1, out);
      return;
    }
    // A "word" longer than the budget: cut it into the longest prefixes that fit.
    let start = span.start;
    while (start < span.end) {
      let lo = start + 1;
      let hi = Math.min(span.end, start + maxChars);
      while (lo < hi) {
        const mid = Math.ceil((lo + hi) / 2);
        if (count({ start, end: mid }) <= budget) lo = mid;
        else hi = mid - 1;
      }
      // Never split a UTF-16 surrogate pair.
      if (lo < span.end && /[\uDC00-\uDFFF]/.test(text[lo]) && lo - 1 > start) lo--;
      out.push({ start, end: lo, tokens: count({ start, end: lo }) });
      start = lo;
    }
  };

  // Units: a whole paragraph when its pieces add up to the budget or less, else its pieces.
  const units: Unit[] = [];
  for (const para of splitSpan(text, { start: 0, end: text.length }, PARAGRAPH)) {
    const parts: Unit[] = [];
    pieces(para, 0, parts);
    const tokens = parts.reduce((a, p) => a + p.tokens, 0);
    if (parts.length > 1 && tokens <= budget) units.push({ ...para, tokens, parts });
    else units.push(...parts);
  }

  const chunks: string[] = [];
  const emit = (group: Unit[]) => {
    const span = { start: group[0].start, end: group[group.length - 1].end };
    if (group.length === 1 && !group[0].parts) {
      chunks.push(text.slice(span.start, span.end)); // a single piece was counted exactly
      return;
    }
    if (count(span) <= budget) {
      chunks.push(text.slice(span.start, span.end));
      return;
    }
    // The estimate was off: pack again from the finest pieces, checking every merge exactly.
    const fine = group.flatMap((u) => u.parts ?? [u]);
    let current: Span | null = null;
    for (const u of fine) {
      const merged: Span | null = current ? { start: current.start, end: u.end } : null;
      if (merged && count(merged) <= budget) {
        current = merged;
        continue;
      }
      if (current) chunks.push(text.slice(current.start, current.end));
      current = u;
    }
    if (current) chunks.push(text.slice(current.start, current.end));
  };

  // Pack consecutive units greedily by their estimated counts.
  let group: Unit[] = [];
  let used = 0;
  for (const u of units) {
    if (group.length > 0 && used + u.tokens > budget) {
      emit(group);
      group = [];
      used = 0;
    }
    group.push(u);
    used += u.tokens;
  }
  if (group.length > 0) emit(group);
  return chunks.filter((c) => tok.encode(c).length > 0);
}
