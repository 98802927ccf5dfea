/**
 * The reply schemas (api/replies.ts) against real replies of every JSON route, on the whole service
 * (real redis-server, stories260K): each reply parses with its strict schema, so a field a route adds,
 * drops or retypes without its schema fails here — and the OpenAPI document, generated from the same
 * schemas, names them for each route.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import * as replies from '../../api/replies.js';
import { STORY_SETS } from '../helpers/models.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

let redis: RedisHandle;
let stack: Stack;

beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({ redis, label: 'replies', env: { CHUNK_TOKEN_BUDGET: '48' } });
});

afterAll(async () => {
  await stack?.close();
  await redis?.stop();
});

/** The reply parsed by its schema; a mismatch fails naming the field. */
function conforms(schema: z.ZodType, body: unknown, what: string): void {
  const r = schema.safeParse(body);
  expect(r.success ? [] : r.error.issues, what).toEqual([]);
}

const QUESTION = 'Lily threw the ball and the dog';

describe('replies match their schemas', () => {
  it('documents, queries (sync, async, explain, retrieval), jobs, health', async () => {
    const ingest = await stack.request('POST', '/v1/documents', {
      body: { id: 'doc-a', text: STORY_SETS[0].chunks.join('\n\n'), metadata: { src: 't' } },
    });
    expect(ingest.status).toBe(202);
    conforms(replies.DocumentAccepted, ingest.body, 'POST /v1/documents');
    const status = await stack.ready('doc-a');
    conforms(replies.DocumentStatusReply, status.body, 'GET /v1/documents/{id}');
    const list = await stack.request('GET', '/v1/documents?limit=1');
    conforms(replies.DocumentList, list.body, 'GET /v1/documents');

    for (const body of [
      { question: QUESTION, documents: ['doc-a'], mode: 'blend', maxTokens: 4, explain: true },
      { question: QUESTION, mode: 'reuse', maxTokens: 4 },
      { question: QUESTION, chunks: ['One day.', 'The end.'], mode: 'full', maxTokens: 4, ratio: 'auto' },
      { question: QUESTION, documents: ['doc-a'], mode: 'blend', ratio: 'auto', maxTokens: 4 },
    ]) {
      const r = await stack.request('POST', '/v1/query', { body });
      expect(r.status, r.text).toBe(200);
      conforms(replies.QueryReply, r.body, `POST /v1/query ${JSON.stringify(body)}`);
    }
    const queued = await stack.request('POST', '/v1/query?async=1', {
      body: { question: QUESTION, maxTokens: 2 },
    });
    expect(queued.status).toBe(202);
    conforms(replies.QueryAccepted, queued.body, 'POST /v1/query?async=1');
    const jobId = (queued.body as { jobId: string }).jobId;
    let job = await stack.request('GET', `/v1/jobs/${jobId}`);
    conforms(replies.JobReply, job.body, 'GET /v1/jobs/{id} (any state)');
    for (let i = 0; i < 200 && (job.body as { state?: string }).state !== 'completed'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      job = await stack.request('GET', `/v1/jobs/${jobId}`);
    }
    expect((job.body as { result?: unknown }).result).toBeDefined();
    conforms(replies.JobReply, job.body, 'GET /v1/jobs/{id} (completed)');

    const deleted = await stack.request('DELETE', '/v1/documents/doc-a');
    conforms(replies.DocumentDeleted, deleted.body, 'DELETE /v1/documents/{id}');
    conforms(replies.Health, (await stack.request('GET', '/healthz')).body, 'GET /healthz');
    conforms(replies.Ready, (await stack.request('GET', '/readyz')).body, 'GET /readyz');
  });

  it('the OpenAI-compatible routes', async () => {
    const models = await stack.request('GET', '/v1/models');
    conforms(replies.ModelList, models.body, 'GET /v1/models');
    const model = (models.body as { data: { id: string }[] }).data[0].id;
    const chat = await stack.request('POST', '/v1/chat/completions', {
      body: { model, messages: [{ role: 'user', content: QUESTION }], max_tokens: 4, chunks: ['One day.'] },
    });
    expect(chat.status, chat.text).toBe(200);
    conforms(replies.ChatCompletion, chat.body, 'POST /v1/chat/completions');
    const completion = await stack.request('POST', '/v1/completions', {
      body: {
        model,
        prompt: QUESTION,
        max_tokens: 4,
        cacheblend: { mode: 'blend' },
        chunks: ['One day.', 'Then.'],
      },
    });
    expect(completion.status, completion.text).toBe(200);
    conforms(replies.Completion, completion.body, 'POST /v1/completions');
  });

  it('a strict schema refuses a reply with a field it does not name', () => {
    const r = replies.DocumentAccepted.safeParse({ id: 'x', chunks: 1, enqueued: 1, extra: true });
    expect(r.success).toBe(false);
  });

  it('the OpenAPI document gives each JSON route its reply schema', async () => {
    const doc = (await stack.request('GET', '/openapi.json')).body as {
      paths: Record<string, Record<string, { responses: Record<string, { content?: unknown }> }>>;
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    const ref = (path: string, method: string, status: string) =>
      (doc.paths[path][method].responses[status].content as Record<string, { schema: { $ref: string } }>)[
        'application/json'
      ].schema.$ref;
    expect(ref('/v1/query', 'post', '200')).toBe('#/components/schemas/QueryReply');
    expect(ref('/v1/documents/{id}', 'get', '200')).toBe('#/components/schemas/DocumentStatus');
    expect(ref('/v1/chat/completions', 'post', '200')).toBe('#/components/schemas/ChatCompletion');
    expect(ref('/v1/query', 'post', '400')).toBe('#/components/schemas/Error');
    const query = doc.components.schemas.QueryReply;
    expect(Object.keys(query.properties!)).toEqual(Object.keys(replies.QueryReply.shape));
    expect(Object.keys(query.properties!)).toContain('recomputedTokens');
  });
});
