import { beforeAll, describe, expect, it } from 'vitest';
import { loadLlama2cModel } from '../../core/model/loaders/llama2c.js';
import type { Tokenizer } from '../../core/model/types.js';
import { chunkText } from '../../core/documents/chunker.js';
import { STORIES_DIR } from '../helpers/models.js';

let tok: Tokenizer;
beforeAll(async () => {
  tok = (await loadLlama2cModel(STORIES_DIR)).tokenizer;
});

const para1 = 'Once upon a time, there was a little girl named Lily. She had a red ball. She liked it a lot.';
const para2 = 'One day, a big dog came to the park. The dog wanted to play too!';
const text = `${para1}\n\n${para2}\n`;

describe('chunkText', () => {
  it('keeps paragraphs whole when they fit, and packs them up to the budget', () => {
    const big = chunkText(text, tok, 1000);
    expect(big).toEqual([`${para1}\n\n${para2}`]);
    const perParagraph = chunkText(text, tok, Math.max(tok.encode(para1).length, tok.encode(para2).length));
    expect(perParagraph).toEqual([para1, para2]);
  });

  it('splits long paragraphs at sentence boundaries, never over the budget', () => {
    const budget = 16;
    const chunks = chunkText(text, tok, budget);
    expect(chunks.length).toBeGreaterThan(2);
    for (const c of chunks) {
      expect(tok.encode(c).length).toBeLessThanOrEqual(budget);
      expect(text.includes(c)).toBe(true); // a slice of the original text
      expect(c).toBe(c.trim());
    }
    expect(chunks[0]).toBe('Once upon a time, there was a little girl named Lily.');
    // Nothing is lost: the chunks, in order, cover every word.
    expect(chunks.join(' ').split(/\s+/)).toEqual(text.trim().split(/\s+/));
  });

  it('cuts a word longer than the budget into pieces that fit', () => {
    const word = 'supercalifragilisticexpialidocious'.repeat(3);
    const chunks = chunkText(`Hi. ${word} end.`, tok, 5);
    for (const c of chunks) expect(tok.encode(c).length).toBeLessThanOrEqual(5);
    expect(chunks.join('').replace(/\s+/g, '')).toBe(`Hi.${word}end.`);
  });

  it('returns nothing for blank text and rejects a bad budget', () => {
    expect(chunkText(' \n\n \t', tok, 10)).toEqual([]);
    expect(() => chunkText('x', tok, 0)).toThrow(/budget/);
  });
});
