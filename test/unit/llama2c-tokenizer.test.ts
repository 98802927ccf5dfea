/**
 * The llama2.c tokenizer's heap-based merge loop against run.c's quadratic loop (written out here as the
 * independent reference): identical ids on story text, random Unicode, byte-fallback characters and
 * repetitive input; and a number of pair lookups linear in the text, where the reference's is quadratic.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Llama2cTokenizer } from '../../core/model/tokenizers/llama2c.js';
import { STORIES_DIR, STORY_SETS } from '../helpers/models.js';
import { seededRandom } from '../../core/model/generate.js';

let tok: Llama2cTokenizer;

/** run.c's encode, verbatim: scan every adjacent pair for the best merge, splice, repeat. */
function referenceEncode(t: Llama2cTokenizer, text: string): number[] {
  const internals = t as unknown as { pieces: string[]; scores: Float32Array; lookup: Map<string, number> };
  const { pieces, scores, lookup } = internals;
  const tokens: number[] = [];
  if (text.length > 0) tokens.push(lookup.get(' ')!);
  for (const ch of text) {
    const id = lookup.get(ch);
    if (id !== undefined) tokens.push(id);
    else for (const b of new TextEncoder().encode(ch)) tokens.push(b + 3);
  }
  for (;;) {
    let best = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = lookup.get(pieces[tokens[i]] + pieces[tokens[i + 1]]);
      if (id !== undefined && scores[id] > best) {
        best = scores[id];
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx < 0) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

function randomText(rand: () => number, length: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz     ..,,!?\'"\nTheLily 0123456789éüß—漢字🙂';
  const chars = [...alphabet];
  let s = '';
  for (let i = 0; i < length; i++) s += chars[Math.floor(rand() * chars.length)];
  return s;
}

beforeAll(async () => {
  tok = await Llama2cTokenizer.load(`${STORIES_DIR}/tok512.bin`, 512);
});

describe('Llama2cTokenizer.encode', () => {
  it('equals run.c’s quadratic merge loop on stories, random Unicode and repetitive text', () => {
    const rand = seededRandom(11);
    const texts = [
      '',
      'a',
      ' ',
      'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
      'the the the the the the the the the',
      ...STORY_SETS.flatMap((s) => s.chunks),
      ...Array.from({ length: 60 }, (_, i) => randomText(rand, 1 + i * 7)),
    ];
    for (const text of texts)
      expect(tok.encode(text), JSON.stringify(text)).toEqual(referenceEncode(tok, text));
  });

  it('round-trips through decode', () => {
    const text = STORY_SETS[0].chunks.join(' ');
    expect(tok.decode([1, ...tok.encode(text)])).toBe(text);
  });

  it('looks up a linear number of pairs (the quadratic loop looked up every pair after every merge)', () => {
    const base = STORY_SETS.flatMap((s) => s.chunks).join(' ');
    const internals = tok as unknown as { mergeOf(a: number, b: number): number };
    const original = internals.mergeOf.bind(tok);
    for (const n of [2_000, 32_000]) {
      const text = base.repeat(Math.ceil(n / base.length)).slice(0, n);
      let lookups = 0;
      internals.mergeOf = (a, b) => {
        lookups++;
        return original(a, b);
      };
      try {
        tok.encode(text);
      } finally {
        internals.mergeOf = original;
      }
      // One lookup per initial pair, at most two per merge: under 3 per character (run.c's loop: ~n²/2).
      expect(lookups).toBeGreaterThan(n / 2);
      expect(lookups).toBeLessThan(3 * (n + 1));
    }
  });

  it('bounds the characters one token covers', () => {
    expect(tok.maxTokenChars).toBeGreaterThan(1);
    expect(tok.maxTokenChars).toBeLessThan(32);
  });
});
