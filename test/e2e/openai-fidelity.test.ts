/**
 * The official `openai` client against the service, for what an OpenAI user relies on: a plain prompt is
 * answered as it is (no retrieval unless asked), unseeded sampling draws its own seed, logprobs equal the
 * engine's log-softmax, stream usage, refused fields and OpenAI's error shape (401 included), /v1/models.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../core/model/engine.js';
import { STORY_SETS, storiesEngine } from '../helpers/models.js';
import { startOpenAiStack, type OpenAiStack } from '../helpers/openai-stack.js';

let stack: OpenAiStack;
let engine: Engine;
const MODEL = 'stories260K';
const SET = STORY_SETS[0];
type Extended<T> = T & { documents?: string[]; chunks?: string[]; cacheblend?: Record<string, unknown> };

beforeAll(async () => {
  stack = await startOpenAiStack('openai-fidelity', { API_KEYS: 'default:fidelity-key-0123456789' });
  engine = await storiesEngine();
  await stack.ingest('story', { text: SET.chunks.join('\n\n') });
}, 120_000);

afterAll(async () => {
  await stack?.close();
  await engine?.dispose();
});

/** Greedy continuation of BOS + `prompt` computed here, with each step's log-softmax in float64. */
async function referenceLogprobs(prompt: string, steps: number, k: number) {
  const tok = engine.model.tokenizer;
  const ids = [engine.config.bosTokenId, ...tok.encode(prompt)];
  const cache = engine.newSequenceCache(ids.length + steps);
  let logits = await engine.forward(cache, ids);
  const out: { id: number; logprob: number; top: number[] }[] = [];
  for (let s = 0; s < steps; s++) {
    const max = Math.max(...logits);
    const norm = max + Math.log([...logits].reduce((a, x) => a + Math.exp(x - max), 0));
    const order = [...logits.keys()].sort((a, b) => logits[b] - logits[a]);
    out.push({
      id: order[0],
      logprob: logits[order[0]] - norm,
      top: order.slice(0, k).map((i) => logits[i] - norm),
    });
    logits = await engine.forward(cache, [order[0]]);
  }
  return out;
}

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

describe('OpenAI fidelity', () => {
  const chat = (extra: Record<string, unknown> = {}) =>
    ({
      model: MODEL,
      messages: [{ role: 'user', content: 'Once upon a time' }],
      max_tokens: 12,
      ...extra,
    }) as OpenAI.ChatCompletionCreateParamsNonStreaming;

  it('draws a seed for each unseeded request; a given seed repeats its sample', async () => {
    const texts = await Promise.all(
      Array.from({ length: 8 }, () => stack.client.chat.completions.create(chat({ temperature: 1 }))),
    );
    expect(new Set(texts.map((c) => c.choices[0].message.content)).size).toBeGreaterThan(1);
    const seeded = await Promise.all(
      [0, 1].map(() => stack.client.chat.completions.create(chat({ temperature: 1, seed: 7 }))),
    );
    expect(seeded[0].choices[0].message.content).toBe(seeded[1].choices[0].message.content);
  });

  it("returns logprobs equal to the engine's log-softmax, on completions and chat", async () => {
    const ref = await referenceLogprobs('Once upon a time', 8, 3);
    const c = await stack.client.completions.create({
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 8,
      temperature: 0,
      logprobs: 3,
    });
    const lp = c.choices[0].logprobs!;
    expect(lp.tokens!.join('')).toBe(c.choices[0].text);
    expect(lp.token_logprobs).toHaveLength(ref.length);
    lp.token_logprobs!.forEach((x, i) => expect(Math.abs(x - ref[i].logprob)).toBeLessThan(1e-4));
    lp.top_logprobs!.forEach((top, i) => {
      const values = Object.values(top).sort((a, b) => b - a);
      values.forEach((v, j) => expect(Math.abs(v - ref[i].top[j])).toBeLessThan(1e-4));
    });
    const tok = engine.model.tokenizer;
    expect(tok.decode(ref.map((r) => r.id))).toContain(c.choices[0].text.trim());
    const m = await stack.client.chat.completions.create(
      chat({ temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 2 }),
    );
    const content = m.choices[0].logprobs!.content!;
    expect(content.map((t) => t.token).join('')).toBe(m.choices[0].message.content);
    content.forEach((t, i) => {
      expect(Math.abs(t.logprob - ref[i].logprob)).toBeLessThan(1e-4);
      expect(t.top_logprobs.map((x) => x.logprob)).toHaveLength(2);
      expect(t.bytes).toEqual([...Buffer.from(t.token)]);
    });
  });

  it('ends a stream with a usage chunk when stream_options.include_usage is set', async () => {
    const plain = await stack.client.chat.completions.create(chat({ temperature: 0 }));
    const stream = await stack.client.chat.completions.create({
      ...chat({ temperature: 0 }),
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    const last = chunks[chunks.length - 1];
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(plain.usage);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(
      plain.choices[0].message.content,
    );
  });

  it('refuses every field it does not implement with a 400 naming it', async () => {
    const refused: [string, unknown][] = [
      ['n', 2],
      ['tools', [{ type: 'function', function: { name: 'f', parameters: {} } }]],
      ['tool_choice', 'auto'],
      ['response_format', { type: 'json_object' }],
      ['logit_bias', { '5': 10 }],
      ['presence_penalty', 0.5],
      ['frequency_penalty', 1],
      ['user', 'someone'],
      ['no_such_field', 1],
    ];
    for (const [field, value] of refused) {
      await expect(
        stack.client.chat.completions.create(chat({ [field]: value })),
        field,
      ).rejects.toMatchObject({
        status: 400,
        error: expect.objectContaining({ param: field, type: 'invalid_request_error' }),
      });
    }
    for (const [field, value] of [
      ['echo', true],
      ['best_of', 2],
      ['suffix', 'end'],
    ] as const) {
      await expect(
        stack.client.completions.create({ model: MODEL, prompt: 'Once', [field]: value }),
        field,
      ).rejects.toMatchObject({ status: 400, error: expect.objectContaining({ param: field }) });
    }
    // Values that ask for nothing are what the service does anyway.
    const neutral = await stack.client.chat.completions.create(
      chat({ temperature: 0, presence_penalty: 0, frequency_penalty: 0, logit_bias: {}, n: 1, tools: [] }),
    );
    expect(neutral.choices[0].message.content).toBe(
      (await stack.client.chat.completions.create(chat({ temperature: 0 }))).choices[0].message.content,
    );
  });

  it("answers in OpenAI's error shape, 401 included; /v1/models says max_model_len", async () => {
    const stranger = new OpenAI({ baseURL: `${stack.api.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await expect(stranger.chat.completions.create(chat())).rejects.toMatchObject({
      status: 401,
      error: expect.objectContaining({ type: 'authentication_error', code: 'invalid_api_key', param: null }),
    });
    const bad = await stack.post('/v1/completions', { model: MODEL, prompt: 'x', temperature: 'hot' });
    expect(bad.status).toBe(400);
    expect(Object.keys(bad.body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    const models = await stack.client.models.list();
    expect(models.data[0]).toMatchObject({ id: MODEL, max_model_len: engine.config.maxPositionEmbeddings });
  });
});
