/**
 * Finds ingested chunks inside any prompt, by text: rolling-hash anchors. Every chunk is indexed under a
 * hash of its first ANCHOR_CHARS characters; a prompt is scanned once with a rolling hash of the same
 * width, and each position whose hash is an anchor is checked against the chunks there by comparing the
 * text itself (a hash collision never makes a match). The longest chunk found at a position wins and the
 * scan resumes after it, so spans never overlap.
 *
 * Cost: one multiply-add and one integer Map lookup per prompt character, plus a string comparison per
 * anchor hit; memory: the chunk texts and one Map entry per distinct anchor. Chunks shorter than
 * ANCHOR_CHARS are never matched (too short to stand for a precomputed passage). Chunks are kept per
 * tenant: a prompt only ever matches its own tenant's chunks.
 */

/** Characters of a chunk's start that its anchor hashes (and the shortest chunk matched). */
export const ANCHOR_CHARS = 32;

const BASE = 0x01000193;
/** BASE^(ANCHOR_CHARS - 1) mod 2^32: the weight of the character leaving the window. */
const TOP = (() => {
  let p = 1;
  for (let i = 1; i < ANCHOR_CHARS; i++) p = Math.imul(p, BASE);
  return p;
})();

function anchorHash(text: string, at: number): number {
  let h = 0;
  for (let i = at; i < at + ANCHOR_CHARS; i++) h = (Math.imul(h, BASE) + text.charCodeAt(i)) | 0;
  return h;
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

class TenantChunks {
  /** Anchor hash → the chunks starting with it. */
  private readonly anchors = new Map<number, Entry[]>();
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
    const h = anchorHash(c.text, 0);
    const list = this.anchors.get(h);
    if (list) list.push(entry);
    else this.anchors.set(h, [entry]);
  }

  remove(name: string, c: { key: string; text: string }): void {
    const id = `${c.key}\0${c.text}`;
    const entry = this.entries.get(id);
    if (!entry || !entry.holders.delete(name) || entry.holders.size > 0) return;
    this.entries.delete(id);
    const h = anchorHash(c.text, 0);
    const list = this.anchors.get(h)!.filter((e) => e !== entry);
    if (list.length) this.anchors.set(h, list);
    else this.anchors.delete(h);
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
    if (n < ANCHOR_CHARS || this.anchors.size === 0) return spans;
    let i = 0;
    let h = anchorHash(text, 0);
    for (;;) {
      const found = this.longestAt(text, i, h);
      if (found) {
        spans.push({ start: i, end: i + found.text.length, chunk: found });
        i += found.text.length;
        if (i + ANCHOR_CHARS > n) break;
        h = anchorHash(text, i);
        continue;
      }
      if (i + ANCHOR_CHARS >= n) break;
      h = (Math.imul(h - Math.imul(text.charCodeAt(i), TOP), BASE) + text.charCodeAt(i + ANCHOR_CHARS)) | 0;
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
    for (const c of chunks) if (c.text.length >= ANCHOR_CHARS) t.add(name, c);
  }

  /** Forget a document's chunks (the ones `add` was given for it). */
  remove(tenant: string, name: string, chunks: readonly { key: string; text: string }[]): void {
    const t = this.tenants.get(tenant);
    if (!t) return;
    for (const c of chunks) if (c.text.length >= ANCHOR_CHARS) t.remove(name, c);
    if (t.size === 0) this.tenants.delete(tenant);
  }

  /** The tenant's chunks found in `text`, in order, never overlapping. */
  match(tenant: string, text: string): ChunkSpan[] {
    return this.tenants.get(tenant)?.match(text) ?? [];
  }
}
