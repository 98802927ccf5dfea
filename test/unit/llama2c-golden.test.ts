import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../core/model/engine.js';
import { generate } from '../../core/model/generate.js';
import { STORIES_GOLDEN, storiesEngine } from '../helpers/models.js';

interface GoldenCase {
  prompt_ids: number[];
  greedy_next_ids: number[];
  text: string;
}
const golden = JSON.parse(readFileSync(STORIES_GOLDEN, 'utf8')) as { cases: Record<string, GoldenCase> };

describe('stories260K against the golden greedy outputs', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await storiesEngine();
  });
  afterAll(() => engine.dispose());

  for (const [name, c] of Object.entries(golden.cases)) {
    it(`reproduces every greedy token for "${name}"`, async () => {
      const r = await generate(engine, c.prompt_ids, {
        maxTokens: c.greedy_next_ids.length,
        stopAtEos: false,
      });
      expect(r.tokens).toEqual(c.greedy_next_ids);
      const tok = engine.model.tokenizer;
      const full = tok.decode([...c.prompt_ids, ...r.tokens]);
      expect(full.endsWith(c.text)).toBe(true);
    });
  }

  it('tokenizes the prompt exactly as the golden file does', () => {
    const c = golden.cases['Once upon a time'];
    expect([1, ...engine.model.tokenizer.encode('Once upon a time')]).toEqual(c.prompt_ids);
  });

  it('round-trips text through the tokenizer, including byte fallback', () => {
    const tok = engine.model.tokenizer;
    for (const text of ['Lily saw a big dog.', 'naïve café ☃', 'line one\nline two']) {
      expect(tok.decode([1, ...tok.encode(text)])).toBe(text);
    }
  });
});
