/**
 * Finds ingested chunks inside any prompt, by text: rolling-hash anchors. Every chunk is indexed under a
 * hash of its first ANCHOR_CHARS characters; a prompt is scanned once with a rolling hash of the same
 * width, and each position whose hash is an anchor is checked against the chunks there by comparing the
 * text itself (a hash collision never makes a match). The longest chunk found at a position wins and the
 * scan resumes after it, so spans never overlap.
 *
 * Chunks shorter than ANCHOR_CHARS (a short sentence, a heading) are indexed by a hash of their whole text
 * and its length, and looked for only where a chunk stands on its own: starting at the start of the text,
 * at the end of a span just matched, after a line break or after a sentence's end and a space; and ending
 * at the end of the text, before a line break, or with a sentence's end before a space. So "The cat sat."
 * is found between two pasted passages, but not inside "The cat sat on the mat." — and, as for long
 * chunks, a candidate is accepted only after comparing its text.
 *
 * Cost: one multiply-add and one integer Map lookup per prompt character, plus a string comparison per
 * anchor hit; where the tenant has short chunks, at most ANCHOR_CHARS - 1 multiply-adds per boundary
 * position and a lookup per boundary it could end at. Memory: the chunk texts and one Map entry per
 * distinct anchor or short text. Chunks are kept per tenant: a prompt only ever matches its own tenant's
 * chunks.
 */

/** Characters of a chunk's start that its anchor hashes; shorter chunks are matched whole, at boundaries. */
export const ANCHOR_CHARS = 32;

const BASE = 0x01000193;
/** BASE^(ANCHOR_CHARS - 1) mod 2^32: the weight of the character leaving the window. */
const TOP = (() => {
  let p = 1;
  for (let i = 1; i < ANCHOR_CHARS; i++) p = Math.imul(p, BASE);
  return p;
})();

function anchorHash(text: string, at: number, chars = ANCHOR_CHARS): number {
  let h = 0;
  for (let i = at; i < at + chars; i++) h = (Math.imul(h, BASE) + text.charCodeAt(i)) | 0;
  return h;
}

/** The key of a short chunk: its whole text's hash, mixed with its length. */
const shortKey = (hash: number, length: number) => (hash ^ Math.imul(length, 0x9e3779b1)) | 0;

const isSpace = (c: number) => c === 32 || c === 9 || c === 13 || c === 10;
/** . ! ? : ; and closing quotes and brackets: a sentence (or a line's label) may end with them. */
const SENTENCE_ENDS = new Set([...'.!?:;"\')]\u201d\u2019'].map((c) => c.charCodeAt(0)));

/** Whether a short chunk may start at `at` (`spanEnd`: where the last matched span ended). */
function startsSegment(text: string, at: number, spanEnd: number): boolean {
  if (at === 0 || at === spanEnd) return true;
  const before = text.charCodeAt(at - 1);
  if (before === 10) return true;
  if (!isSpace(before)) return false;
  return at - 1 === spanEnd || (at >= 2 && SENTENCE_ENDS.has(text.charCodeAt(at - 2)));
}

/** Whether a short chunk may end at `end` (exclusive). */
function endsSegment(text: string, end: number): boolean {
  if (end === text.length) return true;
  const after = text.charCodeAt(end);
  return after === 10 || (isSpace(after) && SENTENCE_ENDS.has(text.charCodeAt(end - 1)));
}

/** An indexed chunk, where it was first seen. */
export interface MatchableChunk {
  key: string;
  text: string;
  document: string;
  index: number;
}

/** A chunk found in a prompt: `text.slice(start, end)` is the chunk's text. */
export interface ChunkSpan {
  start: number;
  end: number;
  chunk: MatchableChunk;
}

interface Entry {
  chunk: MatchableChunk;
  /** Documents (indexed by name) holding this chunk: the entry goes when the last one does. */
  holders: Set<string>;
}

/** Hash → the entries under it, for the anchors and the short chunks. */
class Buckets extends Map<number, Entry[]> {
  put(h: number, entry: Entry): void {
    const list = this.get(h);
    if (list) list.push(entry);
    else this.set(h, [entry]);
  }

  drop(h: number, entry: Entry): void {
    const list = this.get(h)!.filter((e) => e !== entry);
    if (list.length) this.set(h, list);
    else this.delete(h);
  }
}

class TenantChunks {
  /** Anchor hash → the chunks starting with it. */
  private readonly anchors = new Buckets();
  /** shortKey → the chunks shorter than ANCHOR_CHARS with that text hash and length. */
  private readonly shorts = new Buckets();
  /** How many short chunks have each length (lengths absent: none). */
  private readonly shortLengths = new Map<number, number>();
  /** `key\0text` → entry (one per distinct chunk). */
  private readonly entries = new Map<string, Entry>();

  get size(): number {
    return this.entries.size;
  }

  add(name: string, c: MatchableChunk): void {
    const id = `${c.key}\0${c.text}`;
    const known = this.entries.get(id);
    if (known) {
      known.holders.add(name);
      return;
    }
    const entry: Entry = { chunk: c, holders: new Set([name]) };
    this.entries.set(id, entry);
    const n = c.text.length;
    if (n >= ANCHOR_CHARS) {
      this.anchors.put(anchorHash(c.text, 0), entry);
      return;
    }
    this.shorts.put(shortKey(anchorHash(c.text, 0, n), n), entry);
    this.shortLengths.set(n, (this.shortLengths.get(n) ?? 0) + 1);
  }

  remove(name: string, c: { key: string; text: string }): void {
    const id = `${c.key}\0${c.text}`;
    const entry = this.entries.get(id);
    if (!entry || !entry.holders.delete(name) || entry.holders.size > 0) return;
    this.entries.delete(id);
    const n = c.text.length;
    if (n >= ANCHOR_CHARS) {
      this.anchors.drop(anchorHash(c.text, 0), entry);
      return;
    }
    this.shorts.drop(shortKey(anchorHash(c.text, 0, n), n), entry);
    const left = this.shortLengths.get(n)! - 1;
    if (left > 0) this.shortLengths.set(n, left);
    else this.shortLengths.delete(n);
  }

  /** The longest short chunk standing on its own at `at` (see startsSegment/endsSegment), if any. */
  private shortAt(text: string, at: number): MatchableChunk | null {
    let best: MatchableChunk | null = null;
    const most = Math.min(ANCHOR_CHARS - 1, text.length - at);
    let h = 0;
    for (let n = 1; n <= most; n++) {
      h = (Math.imul(h, BASE) + text.charCodeAt(at + n - 1)) | 0;
      if (!this.shortLengths.has(n) || !endsSegment(text, at + n)) continue;
      for (const { chunk } of this.shorts.get(shortKey(h, n)) ?? []) {
        if (text.startsWith(chunk.text, at)) best = chunk;
      }
    }
    return best;
  }

  /** The longest chunk whose text starts at `at`, if any. */
  private longestAt(text: string, at: number, h: number): MatchableChunk | null {
    const list = this.anchors.get(h);
    if (!list) return null;
    let best: MatchableChunk | null = null;
    for (const { chunk } of list) {
      const t = chunk.text;
      if ((!best || t.length > best.text.length) && text.startsWith(t, at)) best = chunk;
    }
    return best;
  }

  match(text: string): ChunkSpan[] {
    const spans: ChunkSpan[] = [];
    const n = text.length;
    const shorts = this.shortLengths.size > 0;
    if (!shorts && (n < ANCHOR_CHARS || this.anchors.size === 0)) return spans;
    let spanEnd = -1;
    let i = 0;
    // h: the anchor hash of text[i, i + ANCHOR_CHARS), while that window fits in the text.
    let h = n >= ANCHOR_CHARS ? anchorHash(text, 0) : 0;
    while (i < n) {
      const fits = i + ANCHOR_CHARS <= n;
      let found = fits ? this.longestAt(text, i, h) : null;
      if (!found && shorts && startsSegment(text, i, spanEnd)) found = this.shortAt(text, i);
      if (found) {
        spans.push({ start: i, end: i + found.text.length, chunk: found });
        i = spanEnd = i + found.text.length;
        if (i + ANCHOR_CHARS <= n) h = anchorHash(text, i);
        continue;
      }
      if (!fits && !shorts) break;
      if (i + ANCHOR_CHARS < n) {
        h = (Math.imul(h - Math.imul(text.charCodeAt(i), TOP), BASE) + text.charCodeAt(i + ANCHOR_CHARS)) | 0;
      }
      i++;
    }
    return spans;
  }
}

export class SpanMatcher {
  private readonly tenants = new Map<string, TenantChunks>();

  /** Distinct chunks held for a tenant. */
  size(tenant: string): number {
    return this.tenants.get(tenant)?.size ?? 0;
  }

  /** Index a document's chunks (`name` identifies the document across tenants). */
  add(tenant: string, name: string, chunks: readonly MatchableChunk[]): void {
    let t = this.tenants.get(tenant);
    if (!t) this.tenants.set(tenant, (t = new TenantChunks()));
    for (const c of chunks) if (c.text.length > 0) t.add(name, c);
  }

  /** Forget a document's chunks (the ones `add` was given for it). */
  remove(tenant: string, name: string, chunks: readonly { key: string; text: string }[]): void {
    const t = this.tenants.get(tenant);
    if (!t) return;
    for (const c of chunks) if (c.text.length > 0) t.remove(name, c);
    if (t.size === 0) this.tenants.delete(tenant);
  }

  /** The tenant's chunks found in `text`, in order, never overlapping. */
  match(tenant: string, text: string): ChunkSpan[] {
    return this.tenants.get(tenant)?.match(text) ?? [];
  }
}
