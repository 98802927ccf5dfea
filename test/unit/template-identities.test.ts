/**
 * Prompt templates: the frame a chat template renders, and the mode identities with a cached prefix
 * (blend r=1 = full; blend r=0 = reuse, or for a question-aware selection reuse over full's layers up to
 * the check layer; prefix = full), on stories260K (plain system prompt) and on a Hugging Face fixture
 * given a chat_template (a copy of qwen2-bias in a temporary folder).
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Template } from '@huggingface/jinja';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blendPrefill,
  memorySource,
  precomputeChunk,
  type BlendOptions,
  type ChunkKvSource,
} from '../../core/blend/index.js';
import { Engine } from '../../core/model/engine.js';
import type { KvCache } from '../../core/model/host/kv-cache.js';
import { decode } from '../../core/model/generate.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import { frameIds, renderFrame } from '../../core/model/template.js';
import { reuseOverFullLowerLayers } from '../helpers/mode-references.js';
import { maxAbsDiff, storiesEngine, STORY_SETS } from '../helpers/models.js';

const TOL = 1e-4;
const QWEN2_FIXTURE = fileURLToPath(new URL('../fixtures/hf/qwen2-bias', import.meta.url));
/** Zephyr-style: role tags, `</s>` (the fixture's EOS) closing each turn. */
const CHAT_TEMPLATE =
  '{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}' +
  '{% if add_generation_prompt %}<|assistant|>\n{% endif %}';
const SYSTEM = 'Once upon a time, there was a little girl named Lily. She liked to play outside.';

interface PromptCase {
  prefix: ChunkKvSource;
  sources: ChunkKvSource[];
  suffix: number[];
}

async function run(engine: Engine, p: PromptCase, o: BlendOptions) {
  const { cache, prefill } = await blendPrefill(engine, p.sources, p.suffix, o, 16, p.prefix);
  const { tokens } = await decode(engine, cache, prefill.firstTokenLogits, {
    maxTokens: 16,
    stopAtEos: false,
  });
  return { logits: prefill.firstTokenLogits, tokens, prefill, cache };
}

let chatDir: string;
beforeAll(async () => {
  chatDir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-chat-'));
  await cp(QWEN2_FIXTURE, chatDir, { recursive: true });
  const cfgPath = path.join(chatDir, 'tokenizer_config.json');
  const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown>;
  await writeFile(cfgPath, JSON.stringify({ ...cfg, chat_template: CHAT_TEMPLATE }));
});
afterAll(() => rm(chatDir, { recursive: true, force: true }));

describe('chat template frame', () => {
  it('splits the rendered template around the chunks, inside the user turn', async () => {
    const tok = (await loadHfModel(chatDir)).tokenizer;
    expect(tok.chatTemplate).toBe(CHAT_TEMPLATE);
    const spec = { system: 'Be brief.', question: 'Who came?' };
    const frame = renderFrame(tok, spec);
    expect(frame).toEqual({
      template: 'chat',
      prefix: '<|system|>\nBe brief.</s>\n<|user|>\n',
      suffix: '\n\nWho came?</s>\n<|assistant|>\n',
    });
    // Independent check: the template rendered with the chunks and question as the user's message.
    const chunks = 'Lily had a ball. A dog came.';
    const whole = new Template(CHAT_TEMPLATE).render({
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: `${chunks}\n\nWho came?` },
      ],
      add_generation_prompt: true,
      bos_token: '<s>',
      eos_token: '</s>',
    });
    expect(`<s>${frame.prefix}${chunks}${frame.suffix}`).toBe(whole);
    expect(renderFrame(tok, { ...spec, template: 'none' })).toEqual({
      template: 'none',
      prefix: 'Be brief.',
      suffix: 'Who came?',
    });
  });

  it('renders earlier turns into the prefix and rejects a template that drops the message', async () => {
    const tok = (await loadHfModel(chatDir)).tokenizer;
    const history = [
      { role: 'user' as const, content: 'Hi.' },
      { role: 'assistant' as const, content: 'Hello!' },
    ];
    const frame = renderFrame(tok, { history, question: 'Who came?' });
    expect(frame.prefix).toBe('<|user|>\nHi.</s>\n<|assistant|>\nHello!</s>\n<|user|>\n');
    expect(() => renderFrame(tok, { template: { jinja: 'no messages here' }, question: 'q' })).toThrow(
      /template: .*does not render/,
    );
    expect(() => renderFrame(tok, { template: { jinja: '{% for %}' }, question: 'q' })).toThrow(
      /template: the chat template failed to render/,
    );
  });

  it('stories260K has no chat template: auto is none, chat is refused', async () => {
    const engine = await storiesEngine();
    try {
      const tok = engine.model.tokenizer;
      expect(renderFrame(tok, { question: 'q' })).toEqual({ template: 'none', prefix: '', suffix: 'q' });
      expect(() => renderFrame(tok, { template: 'chat', question: 'q' })).toThrow(/no chat_template/);
    } finally {
      await engine.dispose();
    }
  });
});

for (const which of [
  'stories260K with a system prompt',
  'Hugging Face fixture with a chat_template',
] as const) {
  describe(`mode identities with a template prefix: ${which}`, () => {
    let engine: Engine;
    let cases: PromptCase[];
    beforeAll(async () => {
      engine =
        which === 'stories260K with a system prompt'
          ? await storiesEngine()
          : await Engine.create(await loadHfModel(chatDir), { threads: 1 });
      const tok = engine.model.tokenizer;
      cases = [];
      for (const s of STORY_SETS.slice(0, 3)) {
        const { prefixIds, suffixIds, template } = frameIds(tok, { system: SYSTEM, question: s.question });
        expect(template).toBe(which.startsWith('stories') ? 'none' : 'chat');
        const cached = async (ids: number[]) => memorySource(await precomputeChunk(engine, ids));
        cases.push({
          prefix: await cached(prefixIds),
          sources: await Promise.all(s.chunks.map((c) => cached(tok.encode(c)))),
          suffix: suffixIds,
        });
      }
    });
    afterAll(() => engine.dispose());

    const identities: [string, BlendOptions, BlendOptions][] = [
      ['blend r=1 equals full', { mode: 'blend', ratio: 1 }, { mode: 'full' }],
      [
        'blend r=0 (deviation selection) equals reuse',
        { mode: 'blend', ratio: 0, selection: 'deviation' },
        { mode: 'reuse' },
      ],
      ['prefix equals full', { mode: 'prefix' }, { mode: 'full' }],
    ];
    for (const [name, a, b] of identities) {
      it(`${name}: first-token logits within ${TOL}, 16 greedy tokens identical`, async () => {
        for (const c of cases) {
          const x = await run(engine, c, a);
          const y = await run(engine, c, b);
          expect(maxAbsDiff(x.logits, y.logits)).toBeLessThan(TOL);
          expect(x.tokens).toEqual(y.tokens);
        }
      });
    }

    it(`blend r=0 (fused) equals reuse over full prefill's layers 0…check: logits within ${TOL}`, async () => {
      for (const c of cases) {
        const x = await run(engine, c, { mode: 'blend', ratio: 0, selection: 'fused' });
        const full = await run(engine, c, { mode: 'full' });
        const reuse = await run(engine, c, { mode: 'reuse' });
        const context = x.prefill.promptTokens - c.suffix.length;
        const ref = await reuseOverFullLowerLayers(engine, full.cache, reuse.cache, context, c.suffix);
        expect(maxAbsDiff(x.logits, ref)).toBeLessThan(TOL);
        expect(maxAbsDiff(ref, reuse.logits)).toBeGreaterThan(1e-3);
      }
    });

    it('never recomputes the prefix: its rows are the cached ones, bit for bit, at every layer', async () => {
      const c = cases[0];
      const p = c.prefix.tokenIds.length;
      expect(p).toBeGreaterThan(3);
      const r = await run(engine, c, { mode: 'blend', ratio: 1 });
      expect(r.prefill.prefixTokens).toBe(p);
      const cache = r.cache as KvCache; // a CPU engine's cache is on the host
      const row = cache.rowSize;
      for (let l = 0; l < engine.config.numLayers; l++) {
        const { k, v } = await c.prefix.layer(l);
        expect(cache.keys[l].subarray(row, (1 + p) * row)).toEqual(k);
        expect(cache.values[l].subarray(row, (1 + p) * row)).toEqual(v);
      }
      // Context tokens are the chunks only; blend recomputes round(r × them).
      const half = await run(engine, c, { mode: 'blend', ratio: 0.5 });
      const ctx = c.sources.reduce((a, s) => a + s.tokenIds.length, 0);
      expect(half.prefill.contextTokens).toBe(ctx);
      expect(half.prefill.recomputedTokens).toBe(Math.floor(0.5 * ctx));
      expect(half.prefill.promptTokens).toBe(1 + p + ctx + c.suffix.length);
    });

    it('reuse differs from full (the identities above are not vacuous)', async () => {
      const x = await run(engine, cases[0], { mode: 'reuse' });
      const y = await run(engine, cases[0], { mode: 'full' });
      expect(maxAbsDiff(x.logits, y.logits)).toBeGreaterThan(1e-3);
    });
  });
}
