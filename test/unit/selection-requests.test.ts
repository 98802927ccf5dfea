import { describe, expect, it } from 'vitest';
import { QueryBody, parseBody } from '../../api/schemas.js';
import { HttpError } from '../../api/errors.js';
import { main } from '../../cli/main.js';
import { CBQA_DIR } from '../helpers/models.js';

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await main(args, (s) => (out += s));
  return { code, out };
}

describe('the selection field of a query', () => {
  it('takes a strategy name, or an object with its metric and sinks', () => {
    expect(parseBody(QueryBody, { question: 'q', selection: 'question' }).selection).toEqual({
      strategy: 'question',
    });
    const full = { strategy: 'combined', metric: 'kv', sinkTokens: 2 };
    expect(parseBody(QueryBody, { question: 'q', selection: full }).selection).toEqual(full);
    expect(parseBody(QueryBody, { question: 'q' }).selection).toBeUndefined();
  });

  it('refuses a bad selection with a 400 naming the field', () => {
    for (const [selection, field] of [
      ['attention', 'selection: must be one of deviation, question, combined'],
      [{ strategy: 'x' }, 'selection: must be one of'],
      [{ sinkTokens: -1 }, 'selection.sinkTokens'],
      [{ sinkTokens: 65 }, 'selection.sinkTokens'],
      [{ metric: 'q' }, 'selection: must be one of'],
      [{ sinks: 2 }, 'sinks'],
    ] as const) {
      let err: unknown;
      try {
        parseBody(QueryBody, { question: 'q', selection });
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(selection)).toBeInstanceOf(HttpError);
      expect((err as HttpError).status).toBe(400);
      expect((err as HttpError).message.startsWith(field)).toBe(true);
    }
  });
});

describe('cacheblend generate --selection', () => {
  const args = [
    'generate',
    '--model',
    CBQA_DIR,
    '--chunk',
    'O89 is pink . P221 owns O104 . O43 is white . O115 is black . P282 bought O140 . <sep>',
    '--chunk',
    'it is green . the mayor of C44 is P214 . P74 owns O89 . O104 is red . <sep>',
    '--question',
    '<q> color of O140 ? <a>',
    '--max-tokens',
    '1',
    '--json',
  ];

  it('runs every strategy, with sinks, within the ratio', async () => {
    for (const s of ['deviation', 'question', 'combined']) {
      const { code, out } = await cli([...args, '--selection', s, '--sink-tokens', '1']);
      expect(code, s).toBe(0);
      const r = JSON.parse(out) as { recomputedTokens: number; contextTokens: number };
      expect(r.recomputedTokens).toBe(Math.floor(0.15 * r.contextTokens));
    }
  });

  it('refuses an unknown strategy and a bad sink count with exit code 2', async () => {
    expect((await cli([...args, '--selection', 'attention'])).code).toBe(2);
    expect((await cli([...args, '--sink-tokens', '-1'])).code).toBe(2);
  });
});
