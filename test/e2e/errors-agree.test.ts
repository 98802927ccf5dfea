/**
 * Errors that agree with each other and with docs/api.md, over the whole service in this process: a text
 * over its limit is a 413 naming the limit on the native and the OpenAI routes alike; a body that is not
 * JSON is a 415; a known path with the wrong method a 405 with `Allow`; OpenAI routes answer in OpenAI's
 * codes (lower case), native routes in the native ones. Reply times are rounded to 0.01 ms.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

let redis: RedisHandle;
let stack: Stack;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({ redis, label: 'errors-agree' });
});

afterAll(async () => {
  await stack?.close();
  await redis?.stop();
});

const LONG = 'x'.repeat(200_000);
const messages = (content: string) => [{ role: 'user', content }];

describe('errors that agree', () => {
  it('a question over its limit: 413 naming the limit, native and OpenAI alike', async () => {
    const native = await stack.request('POST', '/v1/query', { body: { question: LONG } });
    expect(native.status).toBe(413);
    expect(native.body.error).toMatchObject({
      code: 'PAYLOAD_TOO_LARGE',
      field: 'question',
      message: 'question: longer than the limit of 100000 characters',
    });
    const chat = await stack.request('POST', '/v1/chat/completions', {
      body: { model: 'stories260K', messages: messages(LONG) },
    });
    expect(chat.status).toBe(413);
    const completion = await stack.request('POST', '/v1/completions', {
      body: { model: 'stories260K', prompt: LONG },
    });
    expect(completion.status).toBe(413);
    for (const r of [chat, completion]) {
      const e = r.body.error as unknown as { code: string; message: string; type: string };
      expect(e.code).toBe('payload_too_large');
      expect(e.type).toBe('invalid_request_error');
      expect(e.message).toMatch(/limit of 100000 characters|context of 512 tokens/);
    }
    // The message's and the prompt's own limits, not only the context behind them, refuse long ones.
    expect(chat.body.error).toMatchObject({
      param: 'messages.0.content',
      message: 'messages.0.content: longer than the limit of 100000 characters',
    });
    expect(completion.body.error).toMatchObject({
      param: 'prompt',
      message: 'prompt: longer than the limit of 100000 characters',
    });
    // Shorter, but more than the context holds: 413 too, naming the context.
    const over = await stack.request('POST', '/v1/query', { body: { question: 'x '.repeat(1_500) } });
    expect(over.status).toBe(413);
    expect(over.body.error?.message).toMatch(/context of 512 tokens/);
  });

  it('a body that is not JSON: 415 naming its type', async () => {
    for (const path of ['/v1/query', '/v1/documents', '/v1/chat/completions']) {
      const r = await stack.request('POST', path, {
        raw: '{"question": "hi"}',
        headers: { 'content-type': 'text/plain' },
      });
      expect(r.status, path).toBe(415);
      expect(r.body.error?.message, path).toContain('Content-Type must be application/json, got text/plain');
    }
  });

  it('a known path with the wrong method: 405 with Allow', async () => {
    const put = await stack.request('PUT', '/v1/query', { body: { question: 'hi' } });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('POST');
    expect(put.body.error).toMatchObject({ code: 'METHOD_NOT_ALLOWED' });
    const doc = await stack.request('POST', '/v1/documents/some-id', { body: {} });
    expect(doc.status).toBe(405);
    expect(doc.headers.get('allow')).toBe('DELETE, GET, HEAD');
    const chat = await stack.request('GET', '/v1/chat/completions');
    expect(chat.status).toBe(405);
    expect((chat.body.error as unknown as { code: string }).code).toBe('method_not_allowed');
    expect((await stack.request('GET', '/v1/nothing-here')).status).toBe(404);
  });

  it('OpenAI routes answer in OpenAI codes, native routes in native ones', async () => {
    const bad = await stack.request('POST', '/v1/chat/completions', {
      body: { model: 'stories260K', messages: messages('hi'), max_tokens: -1 },
    });
    expect(bad.status).toBe(400);
    expect((bad.body.error as unknown as { code: string }).code).toMatch(/^[a-z_]+$/);
    const model = await stack.request('POST', '/v1/chat/completions', {
      body: { model: 'no-such-model', messages: messages('hi') },
    });
    expect((model.body.error as unknown as { code: string }).code).toBe('model_not_found');
    const native = await stack.request('POST', '/v1/query', { body: { question: 'hi', maxTokens: -1 } });
    expect(native.body.error?.code).toBe('INVALID_ARGUMENT');
  });

  it('rounds reply times to 0.01 ms', async () => {
    const r = await stack.request('POST', '/v1/query', {
      body: { question: 'Lily', chunks: ['Lily had a red ball.'], maxTokens: 2 },
    });
    expect(r.status).toBe(200);
    const body = r.body as { ttftMs: number; timings: Record<string, number> };
    for (const v of [body.ttftMs, ...Object.values(body.timings)]) {
      expect(Math.round(v * 100) / 100).toBe(v);
    }
  });
});
