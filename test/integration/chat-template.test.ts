/**
 * A Hugging Face model with a chat_template through the blend worker's handlers (in this process, a memory
 * store): the worker frames the prompt with the model's template (system turn, chunks inside the user turn)
 * exactly as `cacheblend generate --system … --chunk … --question …` does, caches the prefix once and reads
 * it back on the next query.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEngineInit } from '../helpers/service.js';
import { main } from '../../cli/main.js';
import { createHandlers, type EngineHandlers } from '../../core/inference/engine-handlers.js';
import type { BlendJobData } from '../../core/queue/contracts.js';
import { loadModel } from '../../core/model/load.js';
import type { Tokenizer } from '../../core/model/types.js';
import { plannedPrompt } from '../helpers/models.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/hf/qwen2-bias', import.meta.url));
const CHAT_TEMPLATE =
  '{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}' +
  '{% if add_generation_prompt %}<|assistant|>\n{% endif %}';
const SYSTEM = 'Answer briefly.';
const CHUNKS = ['The cat sat on the mat.', 'A dog ran in the park.'];
const QUESTION = 'Where did the dog run?';

let dir: string;
let handlers: EngineHandlers;
let tokenizer: Tokenizer;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-chat-model-'));
  await cp(FIXTURE, dir, { recursive: true });
  const cfgPath = path.join(dir, 'tokenizer_config.json');
  const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown>;
  await writeFile(cfgPath, JSON.stringify({ ...cfg, chat_template: CHAT_TEMPLATE }));
  tokenizer = (await loadModel(dir)).tokenizer;
  handlers = await createHandlers(testEngineInit({ model: dir, lruBytes: 64 * 1024 * 1024 }));
});

afterAll(async () => {
  await handlers?.close();
  await rm(dir, { recursive: true, force: true });
});

function job(mode: BlendJobData['mode'], fingerprint: string): BlendJobData {
  return {
    question: QUESTION,
    prompt: plannedPrompt(tokenizer, fingerprint, { question: QUESTION, system: SYSTEM, chunkTexts: CHUNKS }),
    documents: [],
    fingerprint,
    mode,
    maxTokens: 8,
    temperature: 0,
    seed: 0,
    stream: false,
  };
}

describe('a chat-template model through the blend worker', () => {
  for (const mode of ['blend', 'full', 'prefix', 'reuse'] as const) {
    it(`frames the prompt with the chat template as the CLI does (${mode})`, async () => {
      const { fingerprint } = await handlers.info();
      const r = await handlers.blend(job(mode, fingerprint));
      let out = '';
      const code = await main(
        [
          'generate',
          '--model',
          dir,
          ...CHUNKS.flatMap((c) => ['--chunk', c]),
          '--system',
          SYSTEM,
          '--question',
          QUESTION,
          '--mode',
          mode,
          '--max-tokens',
          '8',
          '--json',
        ],
        (s) => (out += s),
      );
      expect(code).toBe(0);
      const cli = JSON.parse(out);
      expect(r.template).toBe('chat');
      expect(r.prefixTokens).toBeGreaterThan(0);
      expect(r.prefixTokens).toBe(cli.prefixTokens);
      expect(r.promptTokens).toBe(cli.promptTokens);
      expect(r.tokens.length).toBeGreaterThan(0);
      expect(r.tokens).toEqual(cli.generatedTokens);
      expect(r.answer).toBe(cli.text);
      if (mode !== 'full') {
        // The prefix (system turn + start of the user turn) is one cached object like a chunk: read again.
        const again = await handlers.blend(job(mode, fingerprint));
        expect(again.cache.misses).toBe(0);
        expect(again.cache.hits.lru).toBe(mode === 'prefix' ? 1 : 1 + CHUNKS.length);
      }
    });
  }
});
