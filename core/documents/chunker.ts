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
  return new TextPacker(text, tok, budget).chunks();
}

/** One text's chunking: split into units that fit the budget, pack them greedily, check each chunk. */
class TextPacker {
  private readonly maxChars: number;

  constructor(
    private readonly text: string,
    private readonly tok: Tokenizer,
    private readonly budget: number,
  ) {
    this.maxChars = budget * MAX_CHARS_PER_TOKEN;
  }

  private count(s: Span): number {
    return this.tok.encode(this.text.slice(s.start, s.end)).length;
  }

  private slice(s: Span): string {
    return this.text.slice(s.start, s.end);
  }

  /** Pieces of `span` that each fit the budget, in order (level 0: sentences, 1: words, 2: characters). */
  private pieces(span: Span, level: number, out: Unit[]): void {
    if (span.end - span.start <= this.maxChars) {
      const tokens = this.count(span);
      if (tokens <= this.budget) {
        out.push({ ...span, tokens });
        return;
      }
    }
    if (level >= 2) {
      this.cutWord(span, out);
      return;
    }
    const parts = splitSpan(this.text, span, level === 0 ? SENTENCE : WORD);
    if (parts.length > 1) for (const p of parts) this.pieces(p, level + 1, out);
    else this.pieces(span, level + 1, out);
  }

  /** A "word" longer than the budget: cut it into the longest prefixes that fit. */
  private cutWord(span: Span, out: Unit[]): void {
    let start = span.start;
    while (start < span.end) {
      let lo = start + 1;
      let hi = Math.min(span.end, start + this.maxChars);
      while (lo < hi) {
        const mid = Math.ceil((lo + hi) / 2);
        if (this.count({ start, end: mid }) <= this.budget) lo = mid;
        else hi = mid - 1;
      }
      // Never split a UTF-16 surrogate pair.
      if (lo < span.end && /[\uDC00-\uDFFF]/.test(this.text[lo]) && lo - 1 > start) lo--;
      out.push({ start, end: lo, tokens: this.count({ start, end: lo }) });
      start = lo;
    }
  }

  /** Units: a whole paragraph when its pieces add up to the budget or less, else its pieces. */
  private units(): Unit[] {
    const units: Unit[] = [];
    for (const para of splitSpan(this.text, { start: 0, end: this.text.length }, PARAGRAPH)) {
      const parts: Unit[] = [];
      this.pieces(para, 0, parts);
      const tokens = parts.reduce((a, p) => a + p.tokens, 0);
      if (parts.length > 1 && tokens <= this.budget) units.push({ ...para, tokens, parts });
      else units.push(...parts);
    }
    return units;
  }

  /** A packed group as chunks: one when its exact count fits, else re-packed from its finest pieces. */
  private emit(group: Unit[], chunks: string[]): void {
    const span = { start: group[0].start, end: group[group.length - 1].end };
    // A single piece was counted exactly.
    if ((group.length === 1 && !group[0].parts) || this.count(span) <= this.budget) {
      chunks.push(this.slice(span));
      return;
    }
    // The estimate was off: pack again from the finest pieces, checking every merge exactly.
    let current: Span | null = null;
    for (const u of group.flatMap((g) => g.parts ?? [g])) {
      const merged: Span | null = current ? { start: current.start, end: u.end } : null;
      if (merged && this.count(merged) <= this.budget) {
        current = merged;
        continue;
      }
      if (current) chunks.push(this.slice(current));
      current = u;
    }
    if (current) chunks.push(this.slice(current));
  }

  /** Pack consecutive units greedily by their estimated counts. */
  chunks(): string[] {
    const chunks: string[] = [];
    let group: Unit[] = [];
    let used = 0;
    for (const u of this.units()) {
      if (group.length > 0 && used + u.tokens > this.budget) {
        this.emit(group, chunks);
        group = [];
        used = 0;
      }
      group.push(u);
      used += u.tokens;
    }
    if (group.length > 0) this.emit(group, chunks);
    return chunks.filter((c) => this.tok.encode(c).length > 0);
  }
}
