/** Ranking (BM25 over chunk texts), budget-fitting selection, and the answer text with stop sequences. */
import { describe, expect, it } from 'vitest';
import { AnswerText } from '../../core/inference/answer-text.js';
import { CorpusIndex, selectChunks, type Candidate } from '../../core/retrieval/index.js';
import type { Tokenizer } from '../../core/model/types.js';

const chunk = (text: string, key = text) => ({ key, text, tokens: text.split(' ').length });

describe('CorpusIndex', () => {
  it('ranks the chunk sharing the rarest words first and ignores stop words', () => {
    const index = new CorpusIndex();
    index.set('a', [chunk('the dog ran in the park'), chunk('the cat sat on the mat')]);
    index.set('b', [chunk('the penguin had a secret word'), chunk('the word was marmalade')]);
    const ranked = index.rank('What was the secret word of the penguin?');
    expect(ranked[0]).toMatchObject({ document: 'b', index: 0 });
    expect(ranked.map((r) => r.document)).not.toContain('a'); // "the", "was", "what" match nothing
    expect(ranked.every((r) => r.score > 0)).toBe(true);
  });

  it('replaces and removes documents, and filters by document', () => {
    const index = new CorpusIndex();
    index.set('a', [chunk('red kite'), chunk('blue boat')]);
    index.set('b', [chunk('red boat')]);
    expect(index.rank('red', new Set(['b'])).map((r) => r.document)).toEqual(['b']);
    index.set('a', [chunk('green hat')]);
    expect(index.keysOf('a')).toEqual(['green hat']);
    expect(index.rank('kite')).toEqual([]);
    index.remove('b');
    expect(index.rank('red')).toEqual([]);
    expect(index.documentCount).toBe(1);
    expect(index.chunkCount).toBe(1);
  });
});

describe('CorpusIndex statistics', () => {
  const filler = (i: number) => [chunk(`zebracorn parade number ${i} went down the hill`, `b${i}`)];
  const scoreOf = (index: CorpusIndex, tenant: string, doc: string) =>
    index.rank('zebracorn cake', undefined, tenant).find((r) => r.document === doc)?.score;

  it("keeps one tenant's scores out of another's documents, while they are added and after they go", () => {
    const index = new CorpusIndex();
    index.set('acme/mine', [chunk('a zebracorn cake for the party', 'a0'), chunk('the dog ran', 'a1')]);
    index.set('acme/other', [chunk('a plain cake with jam', 'a2')]);
    const alone = scoreOf(index, 'acme', 'acme/mine')!;
    expect(alone).toBeGreaterThan(0);
    for (let i = 0; i < 30; i++) index.set(`globex/z${i}`, filler(i));
    expect(scoreOf(index, 'acme', 'acme/mine')).toBe(alone);
    expect(index.rank('zebracorn', undefined, 'acme').map((r) => r.document)).toEqual(['acme/mine']);
    expect(index.rank('zebracorn', undefined, 'globex')).toHaveLength(30);
    for (let i = 0; i < 30; i++) index.remove(`globex/z${i}`);
    expect(scoreOf(index, 'acme', 'acme/mine')).toBe(alone);
    expect(index.rank('zebracorn', undefined, 'globex')).toEqual([]);
  });

  it('gives the same scores after documents come and go as before, never negative', () => {
    const index = new CorpusIndex();
    index.set('mine', [chunk('a zebracorn cake for the party', 'a0'), chunk('the dog ran', 'a1')]);
    const before = index.rank('zebracorn cake dog');
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 30; i++) index.set(`z${i}`, filler(i));
      for (let i = 0; i < 30; i++) index.set(`z${i}`, filler(i + 100)); // replaced in place
      for (let i = 0; i < 30; i++) index.remove(`z${i}`);
      const after = index.rank('zebracorn cake dog');
      expect(after.every((r) => r.score > 0)).toBe(true);
      expect(after.map((r) => [r.document, r.index])).toEqual(before.map((r) => [r.document, r.index]));
      after.forEach((r, i) => expect(r.score).toBeCloseTo(before[i].score, 10));
    }
    expect(index.chunkCount).toBe(2);
  });
});

describe('selectChunks', () => {
  const c = (order: number, tokens: number, score: number): Candidate => ({
    document: 'd',
    index: order,
    key: `k${order}`,
    tokens,
    score,
    order,
  });

  it('takes the best that fit, skipping one that overflows, in document order by default', () => {
    const cands = [c(0, 10, 1), c(1, 50, 5), c(2, 30, 4), c(3, 15, 3), c(4, 10, 0)];
    const { used, leftOut } = selectChunks(cands, 60, { order: 'document' });
    // 50 (score 5) fits; 30 does not (room 10); 15 does not; 10 (score 1) fits; budget full.
    expect(used.map((u) => u.index)).toEqual([0, 1]);
    expect(leftOut).toBe(3);
    const rel = selectChunks(cands, 60, { order: 'relevance' });
    expect(rel.used.map((u) => u.index)).toEqual([1, 0]);
  });

  it('caps the count at topK and uses everything when all fits', () => {
    const cands = [c(0, 5, 0), c(1, 5, 2), c(2, 5, 1)];
    expect(selectChunks(cands, 100, { order: 'document', topK: 2 }).used.map((u) => u.index)).toEqual([1, 2]);
    expect(selectChunks(cands, 100, { order: 'document' })).toEqual({ used: cands, leftOut: 0 });
  });
});

/** A tokenizer whose ids are character codes: decode is exact, so the seam logic is visible. */
const charTok: Tokenizer = {
  vocabSize: 65536,
  bosTokenId: 1,
  eosTokenIds: [2],
  maxTokenChars: 1,
  encode: (t) => [...t].map((ch) => ch.charCodeAt(0)),
  decode: (ids) => String.fromCharCode(...ids),
};

describe('AnswerText', () => {
  const feed = (a: AnswerText, s: string) => [...s].map((ch) => a.push(ch.charCodeAt(0)));

  it('ends the answer before the first stop sequence', () => {
    const a = new AnswerText(charTok, charTok.encode('prompt: '), ['END', 'xyz']);
    const stops = feed(a, 'hello wEND more');
    expect(stops.indexOf(true)).toBe('hello wEND'.length - 1);
    expect(a.text).toBe('hello w');
    expect(a.stopped).toBe(true);
  });

  it('holds back a tail that may still become a stop sequence, and nothing without stops', () => {
    const a = new AnswerText(charTok, [], ['END']);
    feed(a, 'abcEN');
    expect(a.streamable()).toBe('abc');
    feed(a, 'x');
    expect(a.streamable()).toBe('abcENx');
    const b = new AnswerText(charTok, []);
    feed(b, 'abcEN');
    expect(b.streamable()).toBe('abcEN');
  });
});
