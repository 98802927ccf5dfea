/**
 * The span matcher against a naive reference (every chunk looked up with indexOf at every position, the
 * longest taken, left to right): same spans on prompts made of chunks pasted among random text; tenants
 * kept apart; documents removed with shared chunks kept while another document holds them.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../core/model/generate.js';
import { ANCHOR_CHARS, SpanMatcher, type MatchableChunk } from '../../core/retrieval/span-matcher.js';

const WORDS =
  'the a cat dog ran sat on mat big red ball Lily Tom park sun happy went home and then saw'.split(' ');

function words(rand: () => number, n: number): string {
  return Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ');
}

/** Longest chunk starting at each position, scanning left to right: the obvious, slow way. */
function naive(chunks: MatchableChunk[], text: string) {
  const out: { start: number; end: number; key: string }[] = [];
  for (let i = 0; i < text.length;) {
    const at = chunks
      .filter((c) => c.text.length >= ANCHOR_CHARS && text.startsWith(c.text, i))
      .sort((a, b) => b.text.length - a.text.length)[0];
    if (at) {
      out.push({ start: i, end: i + at.text.length, key: at.key });
      i += at.text.length;
    } else i++;
  }
  return out;
}

describe('SpanMatcher', () => {
  it('finds the same spans as the naive scan, at any offset and with any text around them', () => {
    const rand = seededRandom(11);
    const chunks: MatchableChunk[] = Array.from({ length: 60 }, (_, i) => ({
      key: `k${i}`,
      text: words(rand, 4 + Math.floor(rand() * 30)),
      document: `d${i % 7}`,
      index: i,
    }));
    // A chunk that extends another: the longer one must win where both start.
    chunks.push({ key: 'long', text: `${chunks[0].text} and more words after it`, document: 'x', index: 0 });
    const m = new SpanMatcher();
    m.add('t', 'doc', chunks);
    let found = 0;
    for (let trial = 0; trial < 40; trial++) {
      const parts: string[] = [];
      for (let p = 0; p < 6; p++) {
        parts.push(rand() < 0.5 ? words(rand, Math.floor(rand() * 8)) : '');
        parts.push(chunks[Math.floor(rand() * chunks.length)].text);
        parts.push(['\n\n', ' ', '', '\n- ', '"'][Math.floor(rand() * 5)]);
      }
      const text = parts.join('');
      const got = m.match('t', text).map((s) => ({ start: s.start, end: s.end, key: s.chunk.key }));
      expect(got).toEqual(naive(chunks, text));
      got.forEach((s) => expect(text.slice(s.start, s.end)).toBe(chunks.find((c) => c.key === s.key)!.text));
      found += got.length;
    }
    expect(found).toBeGreaterThan(100);
  });

  it('keeps tenants apart, ignores chunks shorter than the anchor, and counts holders on removal', () => {
    const m = new SpanMatcher();
    const shared = {
      key: 'k',
      text: 'Lily went to the park and saw a big red ball.',
      document: 'a',
      index: 0,
    };
    const short = { key: 's', text: 'the cat sat', document: 'a', index: 1 };
    m.add('t1', 'a', [shared, short]);
    m.add('t1', 'b', [{ ...shared, document: 'b' }]);
    const prompt = `Context: ${shared.text}\n${short.text}\nQuestion: what?`;
    expect(m.match('t1', prompt).map((s) => s.chunk.key)).toEqual(['k']);
    expect(m.match('t2', prompt)).toEqual([]);
    m.remove('t1', 'a', [shared, short]);
    expect(m.match('t1', prompt)).toHaveLength(1); // document b still holds it
    m.remove('t1', 'b', [shared]);
    expect(m.match('t1', prompt)).toEqual([]);
    expect(m.size('t1')).toBe(0);
  });
});
