/**
 * Automatic chunk matching through the official `openai` client: a LangChain-style prompt that pastes three
 * ingested documents' chunks among its own text is split at them and served from their caches — through
 * chat and completions, plain and streamed — and its answer equals the native blend answer for the same
 * segments given as raw chunks. Chunks shorter than the matcher's anchor are found where they stand on
 * their own. A prompt holding no known chunk is prefilled as it is.
 */
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANCHOR_CHARS } from '../../core/retrieval/span-matcher.js';
import { STORY_SETS } from '../helpers/models.js';
import { startOpenAiStack, type Json, type OpenAiStack } from '../helpers/openai-stack.js';

let stack: OpenAiStack;
const MODEL = 'stories260K';
const SET = STORY_SETS[0];
const LEAD = 'Answer from the context.\n\nContext:\n';
const TAIL = `\n\nQuestion: ${SET.question}`;
/** What LangChain's "stuff" prompt looks like: the passages joined by blank lines inside the user's text. */
const PROMPT = `${LEAD}${SET.chunks.join('\n\n')}${TAIL}`;
/** The same prompt as segments: the lead, each chunk, the blank lines between them. */
const SEGMENTS = [LEAD, ...SET.chunks.flatMap((c, i) => (i ? ['\n\n', c] : [c]))];
const cb = (r: unknown) => (r as { cacheblend: Json }).cacheblend;

beforeAll(async () => {
  stack = await startOpenAiStack('openai-matching', { CHUNK_TOKEN_BUDGET: '256' });
  for (const [i, c] of SET.chunks.entries()) await stack.ingest(`doc${i}`, { chunks: [c] });
}, 120_000);

afterAll(async () => stack?.close());

describe('automatic chunk matching', () => {
  it('serves a completion from the chunks it finds and equals the native blend of the same segments', async () => {
    const c = await stack.client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 12,
      temperature: 0,
    });
    const ext = cb(c);
    expect(ext.matched.chunks.map((m: Json) => m.document)).toEqual(['doc0', 'doc1', 'doc2']);
    expect(ext.mode).toBe('blend');
    expect(c.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThanOrEqual(ext.matched.tokens);
    const native = await stack.post('/v1/query', {
      question: TAIL,
      chunks: SEGMENTS,
      maxTokens: 12,
      template: 'none',
    });
    expect(native.status).toBe(200);
    expect(c.choices[0].text).toBe(native.body.answer);
    expect(c.usage!.prompt_tokens).toBe(native.body.promptTokens);
    expect(ext.contextTokens).toBe(native.body.contextTokens);
    // The native query finds them too when given the prompt as its question.
    const asked = await stack.post('/v1/query', { question: PROMPT, maxTokens: 12 });
    expect(asked.body.answer).toBe(native.body.answer);
    expect(asked.body.matched.tokens).toBe(ext.matched.tokens);
    expect(asked.body.cachedTokens).toBeGreaterThanOrEqual(ext.matched.tokens);
  });

  it('matches inside a chat message, plain and streamed, and in a streamed completion', async () => {
    const params = {
      model: MODEL,
      messages: [{ role: 'user' as const, content: PROMPT }],
      max_tokens: 12,
      temperature: 0,
    };
    const plain = await stack.client.chat.completions.create(params);
    const completion = await stack.client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 12,
      temperature: 0,
    });
    expect(plain.choices[0].message.content).toBe(completion.choices[0].text);
    expect(cb(plain).matched.chunks).toHaveLength(3);
    const stream = await stack.client.chat.completions.create({
      ...params,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(plain.choices[0].message.content);
    expect(usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThanOrEqual(cb(plain).matched.tokens);
    const streamed = await stack.client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 12,
      temperature: 0,
      stream: true,
    });
    let ctext = '';
    for await (const chunk of streamed) ctext += chunk.choices[0]?.text ?? '';
    expect(ctext).toBe(completion.choices[0].text);
  });

  it('matches chunks in the system message too (LangChain\'s "stuff" chain puts them there)', async () => {
    const system = `${LEAD}${SET.chunks.join('\n\n')}`;
    const c = await stack.client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: SET.question },
      ],
      max_tokens: 12,
      temperature: 0,
    });
    expect(cb(c).matched.chunks).toHaveLength(3);
    const native = await stack.post('/v1/query', {
      question: SET.question,
      chunks: SEGMENTS,
      maxTokens: 12,
      template: 'none',
    });
    expect(c.choices[0].message.content).toBe(native.body.answer);
    expect(c.usage!.prompt_tokens).toBe(native.body.promptTokens);
  });

  it('finds chunks shorter than the anchor in an unmodified prompt: every ingested sentence', async () => {
    // Five sentences of 28-35 characters, ingested as one document's chunks, pasted back as the text reads.
    const sentences = [
      'One day, the cat saw a bird.',
      'Once upon a time, there was a cat.',
      'The bird flew up into a tree.',
      'The cat liked to play with yarn.',
      'The cat was sad and went home.',
    ];
    expect(sentences.filter((t) => t.length < ANCHOR_CHARS).length).toBe(3);
    await stack.ingest('short', { chunks: sentences });
    const chat = await stack.client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: `${sentences.join(' ')}\n\nWhat did the cat see?` }],
      max_tokens: 4,
      temperature: 0,
    });
    const ext = cb(chat);
    expect(ext.matched.chunks.map((m: Json) => [m.document, m.index])).toEqual(
      sentences.map((_, i) => ['short', i]),
    );
    expect(chat.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThanOrEqual(ext.matched.tokens);
  });

  it('prefills a prompt with no known chunk as it is, and reads no cache in full mode', async () => {
    const other = `${LEAD}A tiny frog jumped over the old stone wall by the river.${TAIL}`;
    const c = await stack.client.completions.create({
      model: MODEL,
      prompt: other,
      max_tokens: 8,
      temperature: 0,
    });
    expect(cb(c).matched).toBeUndefined();
    expect(cb(c).contextTokens).toBe(0);
    expect(c.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
    const full = await stack.client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 8,
      temperature: 0,
      cacheblend: { mode: 'full' },
    } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(cb(full).matched.chunks).toHaveLength(3);
    expect(full.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
  });
});

/** Series of the API's /metrics: `name{labels}` → value. */
async function scrape(): Promise<Map<string, number>> {
  const text = await (await fetch(`${stack.api.url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(cacheblend:[^\s]+) (\S+)$/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

describe('serving metrics on the API', () => {
  it("count a request's tokens, cache hits, TTFT and latency under vLLM's names", async () => {
    const before = await scrape();
    const c = await stack.client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 6,
      temperature: 0,
    });
    const after = await scrape();
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    expect(delta('cacheblend:prompt_tokens_total')).toBe(c.usage!.prompt_tokens);
    expect(delta('cacheblend:generation_tokens_total')).toBe(c.usage!.completion_tokens);
    expect(delta('cacheblend:prefix_cache_queries_total')).toBe(c.usage!.prompt_tokens);
    expect(delta('cacheblend:prefix_cache_hits_total')).toBe(c.usage!.prompt_tokens_details!.cached_tokens);
    expect(delta('cacheblend:time_to_first_token_seconds_count{mode="blend"}')).toBe(1);
    expect(delta('cacheblend:e2e_request_latency_seconds_count{mode="blend"}')).toBe(1);
    expect(delta(`cacheblend:request_success_total{finished_reason="${c.choices[0].finish_reason}"}`)).toBe(
      1,
    );
    expect(after.get('cacheblend:num_requests_running')).toBe(0);
    expect(after.get('cacheblend:num_requests_waiting')).toBe(0);
  });
});
