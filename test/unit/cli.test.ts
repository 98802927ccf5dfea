import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { applySettingFlags, flagName } from '../../cli/service-flags.js';
import { CONFIG_VARIABLES } from '../../core/config/index.js';
import { HF_FIXTURES_DIR } from '../helpers/hf-fixtures.js';
import { STORIES_DIR } from '../helpers/models.js';

/** `generate` over two chunks (the question and the rest follow). */
const TWO_CHUNKS = [
  'generate',
  '--model',
  STORIES_DIR,
  '--chunk',
  'Lily had a red ball.',
  '--chunk',
  'Tom had a dog.',
];

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await main(args, (s) => (out += s));
  return { code, out };
}

/** Like cli(), with what the command wrote to stderr. */
async function cliErr(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const messages: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => (messages.push(String(s)), true)) as typeof process.stderr.write;
  try {
    return { ...(await cli(args)), err: messages.join('') };
  } finally {
    process.stderr.write = write;
  }
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
    const base = TWO_CHUNKS;
    const q = ['--question', 'Who had the ball?', '--max-tokens', '6', '--json', '--logits'];
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
        ...(mode === 'blend' ? ['--ratio', '1'] : []),
        ...(mode === 'full' ? [] : ['--kv-dtype', 'float32']),
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
      ['generate', '--model', STORIES_DIR, '--question', 'q', '--mode', 'full', '--ratio', '0.5'],
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

  it('refuses flags that do not apply to the mode, naming them', async () => {
    const q = ['generate', '--model', STORIES_DIR, '--chunk', 'Lily had a red ball.', '--question', 'Lily'];
    const cases: [string[], string][] = [
      [['--mode', 'full', '--ratio', '0.5'], '--ratio applies to --mode blend only (the mode here is full)'],
      [
        ['--mode', 'reuse', '--selection', 'fused', '--check-layer', '3'],
        '--check-layer, --selection apply to --mode blend only (the mode here is reuse)',
      ],
      [['--mode', 'prefix', '--gradual', '0.3,0.2'], '--gradual applies to --mode blend only'],
      [['--mode', 'full', '--kv-dtype', 'float32'], '--kv-dtype applies to modes that read stored'],
      [['--logits'], '--logits adds firstTokenLogits to the JSON output: use it with --json'],
    ];
    for (const [flags, message] of cases) {
      const r = await cliErr([...q, ...flags]);
      expect(r.code, flags.join(' ')).toBe(2);
      expect(r.err, flags.join(' ')).toContain(message);
    }
    const plain = await cliErr(['generate', '--model', STORIES_DIR, '--prompt', 'x', '--ratio', '0.3']);
    expect(plain.err).toContain('--ratio applies to --mode blend only (the mode here is full)');
    // The same flags where they apply, and defaults never count.
    const ok = await cli([
      ...q,
      '--mode',
      'blend',
      '--ratio',
      '0.5',
      '--check-layer',
      '1',
      '--max-tokens',
      '2',
    ]);
    expect(ok.code).toBe(0);
    expect((await cli([...q, '--mode', 'reuse', '--max-tokens', '2', '--json', '--logits'])).code).toBe(0);
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

describe('cacheblend generate on a model with fewer layers than the default check layer', () => {
  it('generates in full mode, blends at the last layer and says so, and refuses an explicit layer past it', async () => {
    // A 1-layer Llama: the 2-layer test fixture with num_hidden_layers 1 (the second layer's tensors unused).
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-1layer-'));
    try {
      await cp(path.join(HF_FIXTURES_DIR, 'llama-gqa'), dir, { recursive: true });
      const config = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
      await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 1 }));
      const base = ['generate', '--model', dir, '--max-tokens', '2', '--json'];
      const plain = await cliErr([...base, '--prompt', 'ab']);
      expect(plain.err).toBe('');
      expect(plain.code).toBe(0);
      expect(JSON.parse(plain.out)).toMatchObject({
        mode: 'full',
        generatedTokens: [expect.any(Number), expect.any(Number)],
      });
      const full = await cliErr([...base, '--chunk', 'abc', '--question', 'd', '--mode', 'full']);
      expect(full.code, full.err).toBe(0);
      // A blend setting given with another mode is refused for not applying, not for its value.
      const stray = await cliErr([
        ...base,
        '--chunk',
        'abc',
        '--question',
        'd',
        '--mode',
        'full',
        '--check-layer',
        '5',
      ]);
      expect(stray.code).toBe(2);
      expect(stray.err).toMatch(/--check-layer applies to --mode blend only/);
      const blend = await cliErr([...base, '--chunk', 'abc', '--chunk', 'de', '--question', 'f']);
      expect(blend.code, blend.err).toBe(0);
      expect(JSON.parse(blend.out)).toMatchObject({ mode: 'blend', checkLayer: 0 });
      expect(blend.err).toMatch(
        /the model has 1 layer: blend checks at layer 0 \(the default check layer is 1\)/,
      );
      const explicit = await cliErr([...base, '--chunk', 'abc', '--question', 'f', '--check-layer', '1']);
      expect(explicit.code).toBe(2);
      expect(explicit.err).toMatch(/--check-layer must be an integer in \[0, 0\]/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('cacheblend help, version and usage errors', () => {
  it('prints help of its own for every command and exits 0', async () => {
    const helps: Record<string, string> = {};
    for (const command of ['generate', 'serve', 'api', 'worker', 'precompute', 'rebuild']) {
      const { code, out } = await cli([command, '--help']);
      expect(code, command).toBe(0);
      expect(out, command).toContain(`Usage: cacheblend ${command}`);
      helps[command] = out;
    }
    expect(helps.generate).toContain('--max-tokens');
    expect(helps.serve).toContain('--gpus');
    expect(helps.serve).not.toContain('--max-tokens');
    expect(helps.worker).toContain('--gpu <n>');
    expect(helps.precompute).toContain('--id-prefix');
    expect(helps.precompute).not.toMatch(/npm run/);
    for (const command of ['serve', 'api', 'worker', 'precompute', 'rebuild']) {
      expect(helps[command], command).toMatch(/--redis-url <value> .*\[REDIS_URL/s);
    }
    expect((await cli(['help', 'serve'])).out).toBe(helps.serve);
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    for (const command of Object.keys(helps)) expect(top.out).toContain(`  ${command} `);
  });

  it('prints the package version', async () => {
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'));
    for (const flag of ['--version', '-V'])
      expect(await cli([flag])).toEqual({ code: 0, out: `${version}\n` });
  });

  it('refuses unknown flags, commands and worker kinds with exit code 2 and a message naming them', async () => {
    for (const [args, named] of [
      [['serve', '--bogus'], "unknown option '--bogus'"],
      [['api', '--prot', '9000'], "unknown option '--prot'"],
      [['generate', '--prompt', 'x', '--max-token', '3'], "unknown option '--max-token'"],
      [['frobnicate'], "unknown command 'frobnicate'"],
      [['worker', 'fast'], "'fast' is invalid for argument 'kind'"],
      [['generate', '--question', 'q', '--mode', 'fast'], "'fast' is invalid"],
      [['precompute'], "missing required argument 'paths'"],
    ] as const) {
      const { code, err } = await cliErr([...args]);
      expect(code, args.join(' ')).toBe(2);
      expect(err, args.join(' ')).toContain(named);
    }
  });

  it("names the flag, not the engine's option, when a value is out of range", async () => {
    const r = await cliErr(['generate', '--model', STORIES_DIR, '--question', 'q', '--check-layer', '9']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--check-layer must be an integer in [0, 4]');
    expect(r.err).not.toContain('checkLayer');
  });

  it('takes --ratio auto: the controller with every cache in memory recomputes r_min (BLEND_MIN_RATIO)', async () => {
    const base = TWO_CHUNKS;
    const q = ['--question', 'Who had the ball?', '--max-tokens', '4', '--json'];
    const auto = JSON.parse((await cli([...base, ...q, '--ratio', 'auto'])).out);
    const fixed = JSON.parse((await cli([...base, ...q, '--ratio', '0.15'])).out);
    expect(auto.ratio).toBe(0.15);
    expect(auto.recomputedTokens).toBe(fixed.recomputedTokens);
    expect(auto.generatedTokens).toEqual(fixed.generatedTokens);
    expect((await cliErr([...base, ...q, '--ratio', 'most'])).err).toContain(
      '--ratio must be a number from 0 to 1',
    );
  });
});

describe('service setting flags', () => {
  it('exist for every variable but the secrets, named after it', async () => {
    const { out } = await cli(['serve', '--help']);
    const secrets = ['S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY', 'HF_TOKEN', 'API_KEYS', 'METRICS_TOKEN'];
    for (const v of CONFIG_VARIABLES) {
      if (secrets.includes(v)) expect(out, v).not.toContain(`${flagName(v)} `);
      else expect(out, v).toContain(`${flagName(v)} <value>`);
    }
    expect(flagName('KV_STORE_URL')).toBe('--kv-store-url');
  });

  it('map onto the environment the config schema reads, the flag beating the variable', () => {
    const env: Record<string, string | undefined> = { PORT: '8080', MODEL: 'stories260K', LOG_LEVEL: 'warn' };
    const given = applySettingFlags(
      {
        port: '9000',
        host: '0.0.0.0',
        model: 'cbqa-3M',
        redisUrl: 'redis://10.0.0.1:6380',
        kvStoreUrl: 's3://bucket/kv',
      },
      env,
    );
    expect(given).toEqual({
      PORT: '9000',
      HOST: '0.0.0.0',
      MODEL: 'cbqa-3M',
      REDIS_URL: 'redis://10.0.0.1:6380',
      KV_STORE_URL: 's3://bucket/kv',
    });
    expect(env).toEqual({ ...given, LOG_LEVEL: 'warn' });
  });

  it('are checked by the schema, with messages naming the flag', async () => {
    for (const [args, message] of [
      [['serve', '--port', '99999'], '--port must be at most 65535 (got "99999")'],
      [['api', '--redis-url', 'http://x'], '--redis-url must be a Redis URL'],
      [['worker', 'blend', '--log-level', 'loud'], '--log-level must be one of trace'],
      [['rebuild', '--kv-store-url', 'ftp://x'], '--kv-store-url must be memory://'],
    ] as const) {
      const env = { ...process.env };
      const { code, err } = await cliErr([...args]);
      expect(code, args.join(' ')).toBe(2);
      expect(err, args.join(' ')).toContain(message);
      expect(err).not.toMatch(/\b(PORT|REDIS_URL|LOG_LEVEL|KV_STORE_URL) must/);
      expect(process.env).toEqual(env); // nothing applied from a bad command line
    }
  });
});
