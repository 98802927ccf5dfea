/**
 * The llama2.c tokenizer's heap-based merge loop against run.c's quadratic loop (written out here as the
 * independent reference): identical ids on story text, random Unicode, byte-fallback characters and
 * repetitive input; and linear-ish growth where the reference grows quadratically.
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

  it('grows close to linearly: 16x the text costs far less than 256x the time', () => {
    const base = STORY_SETS.flatMap((s) => s.chunks).join(' ');
    const small = base.repeat(Math.ceil(2_000 / base.length)).slice(0, 2_000);
    const big = base.repeat(Math.ceil(32_000 / base.length)).slice(0, 32_000);
    const time = (text: string) => {
      let best = Infinity;
      for (let r = 0; r < 3; r++) {
        const t0 = performance.now();
        tok.encode(text);
        best = Math.min(best, performance.now() - t0);
      }
      return best;
    };
    time(small); // warm up
    const ratio = time(big) / Math.max(time(small), 0.05);
    // n log n predicts ~20x; a quadratic loop 256x. The bound leaves room for a noisy shared machine.
    expect(ratio).toBeLessThan(80);
  });

  it('bounds the characters one token covers', () => {
    expect(tok.maxTokenChars).toBeGreaterThan(1);
    expect(tok.maxTokenChars).toBeLessThan(32);
  });
});
