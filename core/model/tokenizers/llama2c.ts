import { readFile } from 'node:fs/promises';
import { ModelLoadError } from '../../errors.js';
import type { Tokenizer } from '../types.js';

const BOS = 1;
const EOS = 2;
/** run.c starts its best score at -1e10: pairs scoring no higher never merge. */
const NO_MERGE = -1e10;

interface Pair {
  score: number;
  /** Left node (its original position orders ties: leftmost first) and right node. */
  left: number;
  right: number;
  /** The merged piece. */
  id: number;
  /** Versions of both nodes when the pair was offered; a merge since makes the pair stale. */
  lv: number;
  rv: number;
}

/** A binary max-heap of merge candidates: higher score first, then the leftmost. */
class PairHeap {
  private readonly items: Pair[] = [];

  private before(a: Pair, b: Pair): boolean {
    return a.score > b.score || (a.score === b.score && a.left < b.left);
  }

  push(p: Pair): void {
    const h = this.items;
    h.push(p);
    for (let i = h.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (!this.before(h[i], h[parent])) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  pop(): Pair | undefined {
    const h = this.items;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.before(h[l], h[m])) m = l;
        if (r < h.length && this.before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * llama2.c's tokenizer.bin: a SentencePiece-style BPE vocabulary with merge scores and byte fallback.
 * Encoding follows run.c exactly: dummy-prefix space, one piece per UTF-8 character (or its bytes as
 * <0xHH> tokens), then greedily merge the adjacent pair whose merged piece scores highest.
 */
export class Llama2cTokenizer implements Tokenizer {
  readonly bosTokenId = BOS;
  readonly eosTokenIds: readonly number[];
  private readonly lookup = new Map<string, number>();
  private readonly pieceBytes: Uint8Array[];
  private readonly merges = new Map<number, number>();
  private longest: number | undefined;

  constructor(
    private readonly pieces: string[],
    private readonly scores: Float32Array,
  ) {
    pieces.forEach((p, i) => {
      if (!this.lookup.has(p)) this.lookup.set(p, i);
    });
    // The model ends a story by emitting BOS (llama2.c stops on it); EOS is honoured too.
    this.eosTokenIds = [EOS, BOS];
    const enc = new TextEncoder();
    this.pieceBytes = pieces.map((p) => {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(p);
      return m ? new Uint8Array([parseInt(m[1], 16)]) : enc.encode(p);
    });
  }

  get vocabSize(): number {
    return this.pieces.length;
  }

  static async load(path: string, vocabSize: number): Promise<Llama2cTokenizer> {
    let buf: Buffer;
    try {
      buf = await readFile(path);
    } catch (err) {
      throw new ModelLoadError(`cannot read tokenizer ${path}: ${(err as Error).message}`, { cause: err });
    }
    const pieces: string[] = [];
    const scores = new Float32Array(vocabSize);
    let off = 4; // int32 max_token_length, unused
    const dec = new TextDecoder('utf-8');
    for (let i = 0; i < vocabSize; i++) {
      if (off + 8 > buf.length) throw new ModelLoadError(`tokenizer ${path} is truncated at token ${i}`);
      scores[i] = buf.readFloatLE(off);
      const len = buf.readInt32LE(off + 4);
      off += 8;
      if (len < 0 || off + len > buf.length)
        throw new ModelLoadError(`tokenizer ${path} is truncated at token ${i}`);
      pieces.push(dec.decode(buf.subarray(off, off + len)));
      off += len;
    }
    return new Llama2cTokenizer(pieces, scores);
  }

  /** Characters of the longest piece: no token covers more of a text (a bound callers check before encoding). */
  get maxTokenChars(): number {
    this.longest ??= this.pieces.reduce((m, p) => Math.max(m, [...p].length), 1);
    return this.longest;
  }

  /** Pieces before merging: dummy-prefix space, then one per character, or its UTF-8 bytes as <0xHH>. */
  private initialPieces(text: string): number[] {
    const tokens: number[] = [];
    if (text.length > 0) {
      const space = this.lookup.get(' ');
      if (space !== undefined) tokens.push(space);
    }
    const enc = new TextEncoder();
    for (const ch of text) {
      const id = this.lookup.get(ch);
      if (id !== undefined) tokens.push(id);
      else for (const b of enc.encode(ch)) tokens.push(b + 3);
    }
    return tokens;
  }

  /** The piece two adjacent tokens merge into, or -1 (memoized per pair). */
  private mergeOf(a: number, b: number): number {
    const pair = a * this.pieces.length + b;
    let id = this.merges.get(pair);
    if (id === undefined) {
      id = this.lookup.get(this.pieces[a] + this.pieces[b]) ?? -1;
      this.merges.set(pair, id);
    }
    return id;
  }

  /**
   * run.c's merge loop — repeatedly merge the adjacent pair whose merged piece scores highest, the
   * leftmost on ties — in O(n log n) instead of O(n²): tokens form a linked list, candidate pairs wait in
   * a heap ordered by (score desc, position asc), and pairs a merge invalidated are skipped when popped
   * (each node's version changes when its token does). The result is the quadratic loop's, token for token.
   */
  encode(text: string): number[] {
    const tokens = this.initialPieces(text);
    const n = tokens.length;
    if (n < 2) return tokens;
    const tok = Int32Array.from(tokens);
    const next = new Int32Array(n).map((_, i) => (i + 1 < n ? i + 1 : -1));
    const prev = new Int32Array(n).map((_, i) => i - 1);
    const version = new Int32Array(n);
    const heap = new PairHeap();
    const offer = (left: number) => {
      const right = next[left];
      if (left < 0 || right < 0) return;
      const id = this.mergeOf(tok[left], tok[right]);
      if (id >= 0 && this.scores[id] > NO_MERGE) {
        heap.push({ score: this.scores[id], left, right, id, lv: version[left], rv: version[right] });
      }
    };
    for (let i = 0; i + 1 < n; i++) offer(i);
    for (let p = heap.pop(); p; p = heap.pop()) {
      if (version[p.left] !== p.lv || next[p.left] !== p.right || version[p.right] !== p.rv) continue;
      tok[p.left] = p.id;
      version[p.left]++;
      version[p.right] = -1; // removed
      next[p.left] = next[p.right];
      if (next[p.right] >= 0) prev[next[p.right]] = p.left;
      offer(prev[p.left]);
      offer(p.left);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(tok[i]);
    return out;
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    let prev = -1;
    for (const id of ids) {
      if (id < 0 || id >= this.pieces.length) throw new RangeError(`token id ${id} outside the vocabulary`);
      if (id === BOS || id === EOS || id === 0) {
        prev = id;
        continue;
      }
      let piece = this.pieceBytes[id];
      if (prev === BOS && piece[0] === 0x20) piece = piece.subarray(1);
      for (const b of piece) bytes.push(b);
      prev = id;
    }
    return new TextDecoder('utf-8').decode(new Uint8Array(bytes));
  }
}
