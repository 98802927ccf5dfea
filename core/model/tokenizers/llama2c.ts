import { readFile } from 'node:fs/promises';
import { ModelLoadError } from '../../errors.js';
import type { Tokenizer } from '../types.js';

const BOS = 1;
const EOS = 2;

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

  encode(text: string): number[] {
    const tokens: number[] = [];
    if (text.length > 0) {
      const space = this.lookup.get(' ');
      if (space !== undefined) tokens.push(space);
    }
    for (const ch of text) {
      const id = this.lookup.get(ch);
      if (id !== undefined) tokens.push(id);
      else for (const b of new TextEncoder().encode(ch)) tokens.push(b + 3);
    }
    for (;;) {
      let best = -1e10;
      let bestId = -1;
      let bestIdx = -1;
      for (let i = 0; i < tokens.length - 1; i++) {
        const id = this.lookup.get(this.pieces[tokens[i]] + this.pieces[tokens[i + 1]]);
        if (id !== undefined && this.scores[id] > best) {
          best = this.scores[id];
          bestId = id;
          bestIdx = i;
        }
      }
      if (bestIdx < 0) break;
      tokens.splice(bestIdx, 2, bestId);
    }
    return tokens;
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
