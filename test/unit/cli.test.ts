import { describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { STORIES_DIR } from '../helpers/models.js';

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await main(args, (s) => (out += s));
  return { code, out };
}

describe('cacheblend generate', () => {
  it('prints the documented JSON for --prompt', async () => {
    const { code, out } = await cli([
      'generate',
      '--model',
      STORIES_DIR,
      '--prompt',
      'Once upon a time',
      '--max-tokens',
      '8',
      '--json',
    ]);
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(r.promptTokens).toBe(5);
    expect(r.generatedTokens).toEqual([432, 383, 286, 261, 376, 298, 315, 421]); // golden prefix
    expect(r.text).toBe(', there was a little girl'); // the golden continuation's first 8 tokens
    expect(r.ttftMs).toBeGreaterThan(0);
    expect(r.totalMs).toBeGreaterThanOrEqual(r.ttftMs);
  });

  it('runs every mode over chunks, with --logits, and blend r=1 matches full', async () => {
    const base = [
      'generate',
      '--model',
      STORIES_DIR,
      '--chunk',
      'Lily had a red ball.',
      '--chunk',
      'Tom had a dog.',
    ];
    const q = [
      '--question',
      'Who had the ball?',
      '--max-tokens',
      '6',
      '--json',
      '--logits',
      '--kv-dtype',
      'float32',
    ];
    const results: Record<
      string,
      { firstTokenLogits: number[]; generatedTokens: number[]; [k: string]: unknown }
    > = {};
    for (const mode of ['full', 'prefix', 'reuse', 'blend']) {
      const { code, out } = await cli([
        ...base,
        ...q,
        '--mode',
        mode,
        '--ratio',
        mode === 'blend' ? '1' : '0.15',
      ]);
      expect(code).toBe(0);
      results[mode] = JSON.parse(out);
      expect(results[mode].mode).toBe(mode);
      expect(results[mode].firstTokenLogits).toHaveLength(512);
    }
    expect(results.blend.contextTokens).toBe(results.full.contextTokens);
    expect(results.blend.recomputedTokens).toBe(results.blend.contextTokens);
    expect(results.blend.generatedTokens).toEqual(results.full.generatedTokens);
  });

  it('answers bad input with a message and exit code 2, not a crash', async () => {
    for (const args of [
      ['generate', '--prompt', 'x'],
      ['generate', '--model', STORIES_DIR, '--prompt', 'x', '--max-tokens', 'ten'],
      ['generate', '--model', STORIES_DIR, '--question', 'q', '--mode', 'fast'],
      ['generate', '--model', STORIES_DIR, '--question', 'q', '--ratio', '1.5'],
      ['generate', '--model', STORIES_DIR, '--prompt', 'x', '--chunk', 'y'],
      ['generate', '--model', STORIES_DIR, '--bogus'],
      ['frobnicate'],
    ]) {
      const { code } = await cli(args);
      expect(code, args.join(' ')).toBe(2);
    }
    const missing = await cli(['generate', '--model', '/nonexistent/model', '--prompt', 'x']);
    expect(missing.code).toBe(1);
  });
});
