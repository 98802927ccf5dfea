/**
 * The official `openai` client, unmodified, against a real API + workers: list models, chat completions
 * (plain and streamed), completions (plain and streamed), errors — answers checked against the native API
 * and the CLI.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiServer } from '../../api/server.js';
import { main } from '../../cli/main.js';
import {
  engineThreadInit,
  startEngineThread,
  type EngineThread,
} from '../../core/inference/engine-thread.js';
import { startPrecomputeWorker, type PrecomputeWorker } from '../../precompute/precompute-worker.js';
import { startBlendWorker, type BlendWorker } from '../../worker/blend-worker.js';
import { STORIES_DIR, STORY_SETS } from '../helpers/models.js';
import { serviceConfig, waitFor, type TestServiceEnv } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';

let redisServer: RedisHandle;
let env: TestServiceEnv;
let thread: EngineThread;
let precompute: PrecomputeWorker;
let blend: BlendWorker;
let api: ApiServer;
let client: OpenAI;

const MODEL = 'stories260K';
const MAX_TOKENS = 16;
const SET = STORY_SETS[0];
/** Extension fields ride in the body; the client passes unknown params through as they are. */
type Extended<T> = T & { documents?: string[]; chunks?: string[]; cacheblend?: Record<string, unknown> };

async function native(body: Record<string, unknown>) {
  const res = await fetch(`${api.url}/v1/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as {
    answer: string;
    tokens: number[];
    promptTokens: number;
    cachedTokens: number;
    finishReason: string;
  };
}

beforeAll(async () => {
  redisServer = await startRedis();
  // The store is a local folder here (file://): both workers and the API share it.
  env = await serviceConfig({ redis: redisServer, label: 'openai' });
  const { config } = env;
  thread = await startEngineThread(engineThreadInit(config, { threads: 1 }));
  [precompute, blend, api] = await Promise.all([
    startPrecomputeWorker({ config, thread, reconcileMs: 0 }),
    startBlendWorker({ config, thread }),
    startApi({ config, port: 0 }),
  ]);
  await api.modelReady;
  client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: 'not-checked', maxRetries: 0 });
  const r = await fetch(`${api.url}/v1/documents`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'story', text: SET.chunks.join('\n\n') }),
  });
  expect(r.status).toBe(202);
  await waitFor(async () => {
    const s = (await (await fetch(`${api.url}/v1/documents/story`)).json()) as { status: string };
    return s.status === 'ready';
  }, 20_000);
}, 120_000);

afterAll(async () => {
  await Promise.all([blend?.close(), precompute?.close()]);
  await api?.close();
  await thread?.terminate();
  await Promise.all([redisServer?.stop(), env?.cleanup()]);
});

describe('the openai client against the service', () => {
  it('lists the served model', async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => m.id)).toEqual([MODEL]);
    expect(page.data[0]).toMatchObject({ object: 'model', owned_by: 'cacheblend' });
  });

  it('answers a chat completion over documents as the native query does', async () => {
    const params: Extended<OpenAI.ChatCompletionCreateParamsNonStreaming> = {
      model: MODEL,
      messages: [{ role: 'user', content: SET.question }],
      max_tokens: MAX_TOKENS,
      temperature: 0,
      documents: ['story'],
      cacheblend: { mode: 'blend', ratio: 0.15 },
    };
    const c = await client.chat.completions.create(params);
    const expected = await native({ question: SET.question, documents: ['story'], maxTokens: MAX_TOKENS });
    expect(c.object).toBe('chat.completion');
    expect(c.model).toBe(MODEL);
    expect(c.choices).toHaveLength(1);
    expect(c.choices[0].message).toMatchObject({ role: 'assistant', content: expected.answer });
    expect(['stop', 'length']).toContain(c.choices[0].finish_reason);
    expect(c.choices[0].finish_reason).toBe(expected.finishReason);
    expect(c.usage).toEqual({
      prompt_tokens: expected.promptTokens,
      completion_tokens: expected.tokens.length,
      total_tokens: expected.promptTokens + expected.tokens.length,
      prompt_tokens_details: { cached_tokens: expected.cachedTokens },
    });
    expect(expected.cachedTokens).toBeGreaterThan(0);
    const ext = (
      c as unknown as { cacheblend: { mode: string; ratio: number; retrieval: { chunks: unknown[] } } }
    ).cacheblend;
    expect(ext).toMatchObject({ mode: 'blend', ratio: 0.15 });
    expect(ext.retrieval.chunks.length).toBeGreaterThan(0);
  });

  it('streams a chat completion whose deltas add up to the plain answer', async () => {
    const base = {
      model: MODEL,
      messages: [
        { role: 'system' as const, content: 'Once upon a time there was a cat.' },
        { role: 'user' as const, content: SET.question },
      ],
      max_tokens: MAX_TOKENS,
      temperature: 0,
      chunks: SET.chunks,
    };
    const plain = await client.chat.completions.create(base as Extended<typeof base>);
    const stream = await client.chat.completions.create({
      ...base,
      stream: true,
    } as Extended<OpenAI.ChatCompletionCreateParamsStreaming>);
    let text = '';
    let finish: string | null = null;
    let chunks = 0;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      chunks++;
    }
    expect(chunks).toBeGreaterThan(2);
    expect(text).toBe(plain.choices[0].message.content);
    expect(finish).toBe(plain.choices[0].finish_reason);
    const withSystem = (plain as unknown as { cacheblend: { prefixTokens: number } }).cacheblend;
    expect(withSystem.prefixTokens).toBeGreaterThan(0);
  });

  it('answers a completion over raw chunks as `cacheblend generate` does, plain and streamed', async () => {
    const params = {
      model: MODEL,
      prompt: SET.question,
      max_tokens: MAX_TOKENS,
      temperature: 0,
      chunks: SET.chunks,
      cacheblend: { mode: 'blend' },
    };
    const c = await client.completions.create(params as Extended<OpenAI.CompletionCreateParamsNonStreaming>);
    let out = '';
    const code = await main(
      [
        'generate',
        '--model',
        STORIES_DIR,
        ...SET.chunks.flatMap((x) => ['--chunk', x]),
        '--question',
        SET.question,
        '--max-tokens',
        String(MAX_TOKENS),
        '--json',
      ],
      (s) => (out += s),
    );
    expect(code).toBe(0);
    expect(c.object).toBe('text_completion');
    expect(c.choices[0].text).toBe(JSON.parse(out).text);
    const stream = await client.completions.create({
      ...params,
      stream: true,
    } as Extended<OpenAI.CompletionCreateParamsStreaming>);
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(c.choices[0].text);
  });

  it('stops at a stop sequence with finish_reason "stop"', async () => {
    const params = {
      model: MODEL,
      prompt: SET.question,
      max_tokens: MAX_TOKENS,
      temperature: 0,
      chunks: SET.chunks,
    };
    const full = await client.completions.create(
      params as Extended<OpenAI.CompletionCreateParamsNonStreaming>,
    );
    const text = full.choices[0].text;
    expect(full.choices[0].finish_reason).toBe('length');
    const stop = text.slice(4, 8);
    const stopped = await client.completions.create({
      ...params,
      stop,
    } as Extended<OpenAI.CompletionCreateParamsNonStreaming>);
    expect(stopped.choices[0]).toMatchObject({
      text: text.slice(0, text.indexOf(stop)),
      finish_reason: 'stop',
    });
  });

  it('answers bad requests with 4xx errors in OpenAI shape', async () => {
    await expect(
      client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    ).rejects.toMatchObject({ status: 404, error: expect.objectContaining({ code: 'model_not_found' }) });
    await expect(
      client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'hi' }],
        temperature: 5,
      }),
    ).rejects.toMatchObject({
      status: 400,
      error: expect.objectContaining({ type: 'invalid_request_error', param: 'temperature' }),
    });
    await expect(
      client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'hi' }],
        documents: ['no-such-doc'],
      } as Extended<OpenAI.ChatCompletionCreateParamsNonStreaming>),
    ).rejects.toMatchObject({
      status: 404,
      error: expect.objectContaining({ message: expect.stringContaining('no-such-doc') }),
    });
    await expect(
      client.chat.completions.create({ model: MODEL, messages: [{ role: 'assistant', content: 'hi' }] }),
    ).rejects.toMatchObject({ status: 400, error: expect.objectContaining({ param: 'messages' }) });
  });
});
