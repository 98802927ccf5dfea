/**
 * The span matcher against a naive reference (every chunk looked up with indexOf at every position, the
 * longest taken, left to right; short chunks only where they stand on their own): same spans on prompts
 * made of chunks pasted among random text; short chunks found between passages but never inside a
 * sentence or a word; tenants
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

const SENTENCE_END = /[.!?:;"')\]\u201d\u2019]/;
/** A short chunk stands on its own from `i`: text start, a span's end, a line break, or a sentence end + space. */
const startOk = (text: string, i: number, spanEnd: number) =>
  i === 0 ||
  i === spanEnd ||
  text[i - 1] === '\n' ||
  (/[ \t\r]/.test(text[i - 1]) && (i - 1 === spanEnd || SENTENCE_END.test(text[i - 2] ?? '')));
/** ... to `j`: text end, a line break, or a sentence end followed by a space. */
const endOk = (text: string, j: number) =>
  j === text.length || text[j] === '\n' || (/[ \t\r]/.test(text[j]) && SENTENCE_END.test(text[j - 1]));

/**
 * Longest chunk starting at each position, scanning left to right: the obvious, slow way. Chunks shorter
 * than the anchor count only where they stand on their own (startOk, endOk).
 */
function naive(chunks: MatchableChunk[], text: string) {
  const out: { start: number; end: number; key: string }[] = [];
  let spanEnd = -1;
  for (let i = 0; i < text.length;) {
    const longest = (ok: (c: MatchableChunk) => boolean) =>
      chunks
        .filter((c) => ok(c) && text.startsWith(c.text, i))
        .sort((a, b) => b.text.length - a.text.length)[0];
    const at =
      longest((c) => c.text.length >= ANCHOR_CHARS) ??
      (startOk(text, i, spanEnd)
        ? longest((c) => c.text.length < ANCHOR_CHARS && endOk(text, i + c.text.length))
        : undefined);
    if (at) {
      out.push({ start: i, end: i + at.text.length, key: at.key });
      i = spanEnd = i + at.text.length;
    } else i++;
  }
  return out;
}

describe('SpanMatcher', () => {
  it('finds the same spans as the naive scan, at any offset and with any text around them', () => {
    const rand = seededRandom(11);
    const chunks: MatchableChunk[] = Array.from({ length: 60 }, (_, i) => ({
      key: `k${i}`,
      // 1 to 33 words, a third of them ending a sentence: chunks shorter than the anchor among them.
      text: words(rand, 1 + Math.floor(rand() * 33)) + (i % 3 === 0 ? '.' : ''),
      document: `d${i % 7}`,
      index: i,
    }));
    // A chunk that extends another: the longer one must win where both start.
    chunks.push({ key: 'long', text: `${chunks[0].text} and more words after it`, document: 'x', index: 0 });
    const m = new SpanMatcher();
    m.add('t', 'doc', chunks);
    let found = 0;
    let shortFound = 0;
    for (let trial = 0; trial < 40; trial++) {
      const parts: string[] = [];
      for (let p = 0; p < 6; p++) {
        parts.push(rand() < 0.5 ? words(rand, Math.floor(rand() * 8)) : '');
        parts.push(chunks[Math.floor(rand() * chunks.length)].text);
        parts.push(['\n\n', ' ', '', '\n- ', '"', '. '][Math.floor(rand() * 6)]);
      }
      const text = parts.join('');
      const got = m.match('t', text).map((s) => ({ start: s.start, end: s.end, key: s.chunk.key }));
      expect(got).toEqual(naive(chunks, text));
      got.forEach((s) => expect(text.slice(s.start, s.end)).toBe(chunks.find((c) => c.key === s.key)!.text));
      found += got.length;
      shortFound += got.filter((g) => g.end - g.start < ANCHOR_CHARS).length;
    }
    expect(found).toBeGreaterThan(100);
    expect(shortFound).toBeGreaterThan(5);
  });

  it('finds short chunks where they stand on their own, and nowhere else', () => {
    const m = new SpanMatcher();
    const cat = { key: 'cat', text: 'The cat sat.', document: 'a', index: 0 };
    const dog = { key: 'dog', text: 'The dog ran home.', document: 'a', index: 1 };
    const long = {
      key: 'long',
      text: 'Lily went to the park and saw a big red ball.',
      document: 'a',
      index: 2,
    };
    const title = { key: 'title', text: 'Lily', document: 'a', index: 3 };
    m.add('t', 'a', [cat, dog, long, title]);
    const keys = (text: string) => m.match('t', text).map((s) => s.chunk.key);
    // Pasted as the document reads, after a label, at either end, between long chunks, on lines of their own.
    expect(keys(`${cat.text} ${long.text} ${dog.text}`)).toEqual(['cat', 'long', 'dog']);
    expect(keys(`Context: ${cat.text} ${dog.text}\nQuestion: why?`)).toEqual(['cat', 'dog']);
    expect(keys(`${long.text}${cat.text}`)).toEqual(['long', 'cat']);
    expect(keys(`Title:\n${title.text}\n${cat.text}`)).toEqual(['title', 'cat']);
    // Inside a sentence, as a sentence's start, inside a word, or glued to other text: not a chunk there.
    expect(keys('Then The cat sat. was said')).toEqual([]);
    expect(keys('The cat sat on the mat.')).toEqual([]);
    expect(keys('Lilypad. Lily went home.')).toEqual([]);
    expect(keys('xThe cat sat.')).toEqual([]);
    expect(keys('The cat sat.x')).toEqual([]);
    // Same length and hash bucket as a stored chunk, other text: compared, never matched.
    expect(keys('The bat sat.')).toEqual([]);
    m.remove('t', 'a', [cat, dog, long, title]);
    expect(keys(`${cat.text} ${dog.text}`)).toEqual([]);
    expect(m.size('t')).toBe(0);
  });

  it('keeps tenants apart, and counts holders on removal', () => {
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
    expect(m.match('t1', prompt).map((s) => s.chunk.key)).toEqual(['k', 's']);
    expect(m.match('t2', prompt)).toEqual([]);
    m.remove('t1', 'a', [shared, short]);
    expect(m.match('t1', prompt).map((s) => s.chunk.key)).toEqual(['k']); // document b still holds it
    m.remove('t1', 'b', [shared]);
    expect(m.match('t1', prompt)).toEqual([]);
    expect(m.size('t1')).toBe(0);
  });
});
