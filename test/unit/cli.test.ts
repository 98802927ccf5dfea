import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { STORIES_DIR } from '../helpers/models.js';

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await main(args, (s) => (out += s));
  return { code, out };
}

describe('cacheblend generate', () => {
  it('frames the prompt with --system and a --template file, and stops at --stop', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-tpl-'));
    try {
      const file = path.join(dir, 'tpl.jinja');
      await writeFile(file, '{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[answer]');
      const base = ['generate', '--model', STORIES_DIR, '--chunk', 'Lily had a red ball.', '--json'];
      const plain = JSON.parse((await cli([...base, '--question', 'Lily', '--max-tokens', '12'])).out);
      expect(plain).toMatchObject({ prefixTokens: 0, finishReason: 'length' });
      const sys = JSON.parse(
        (await cli([...base, '--question', 'Lily', '--system', 'Once upon a time.', '--max-tokens', '4']))
          .out,
      );
      const system = JSON.parse(
        (
          await cli([
            'generate',
            '--model',
            STORIES_DIR,
            '--prompt',
            'Once upon a time.',
            '--max-tokens',
            '0',
            '--json',
          ])
        ).out,
      );
      expect(sys.prefixTokens).toBe(system.promptTokens - 1); // the system prompt's own tokens, after BOS
      const tpl = JSON.parse(
        (await cli([...base, '--question', 'Lily', '--template', file, '--max-tokens', '4'])).out,
      );
      expect(tpl.prefixTokens).toBeGreaterThan(0); // "[user] " before the chunks
      const stop = plain.text.slice(3, 6);
      const stopped = JSON.parse(
        (await cli([...base, '--question', 'Lily', '--max-tokens', '12', '--stop', stop])).out,
      );
      expect(stopped).toMatchObject({
        text: plain.text.slice(0, plain.text.indexOf(stop)),
        finishReason: 'stop',
      });
      const bad = await cli([...base, '--question', 'Lily', '--template', path.join(dir, 'missing')]);
      expect(bad.code).toBe(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

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
      ['generate'],
      ['generate', '--model', STORIES_DIR, '--prompt', 'x', '--max-tokens', '-3'],
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

  it('prints help for every command and exits 0', async () => {
    for (const command of ['generate', 'serve', 'api', 'worker', 'precompute']) {
      const { code, out } = await cli([command, '--help']);
      expect(code, command).toBe(0);
      expect(out, command).toMatch(/usage|commands/);
    }
    expect((await cli(['generate', '--help'])).out).toContain('--max-tokens');
  });

  it('says plainly what is wrong with a number, negative ones included', async () => {
    const messages: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (messages.push(String(s)), true)) as typeof process.stderr.write;
    try {
      await cli(['generate', '--model', STORIES_DIR, '--prompt', 'x', '--max-tokens', '-3']);
      await cli(['generate', '--model', STORIES_DIR, '--question', 'q', '--ratio', '1.5']);
    } finally {
      process.stderr.write = write;
    }
    const text = messages.join('');
    expect(text).toContain('--max-tokens must be an integer of at least 0, got "-3"');
    expect(text).toContain('--ratio must be a number from 0 to 1, got "1.5"');
    expect(text).not.toMatch(/ambiguous/);
  });

  it("refuses a prompt longer than the context with the service's message", async () => {
    const messages: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (messages.push(String(s)), true)) as typeof process.stderr.write;
    let code: number;
    try {
      ({ code } = await cli([
        'generate',
        '--model',
        STORIES_DIR,
        '--prompt',
        'Once upon a time '.repeat(200),
      ]));
    } finally {
      process.stderr.write = write;
    }
    expect(code).toBe(2);
    expect(messages.join('')).toMatch(
      /--prompt: the prompt \(\d+ tokens\) plus maxTokens \(32\) exceeds the model's context of 512 tokens/,
    );
  });
});
