/**
 * The OpenAPI 3.1 document served at GET /openapi.json, generated from the request schemas in schemas.ts
 * (zod's JSON Schema output), so the document and the validation can never disagree. Each route of the
 * API is listed once here with its request schema and the replies it can give.
 */
import { z } from 'zod';
import { ChatCompletionBody, CompletionBody, DocumentBody, JobId, QueryBody } from './schemas.js';
import { documentIdSchema } from '../core/documents/manifest.js';

interface RouteDoc {
  method: 'get' | 'post' | 'delete';
  path: string;
  summary: string;
  body?: z.ZodTypeAny;
  params?: Record<string, z.ZodTypeAny>;
  query?: Record<string, string>;
  /** Status → description; error statuses reply with the Error schema. */
  responses: Record<number, string>;
}

const ROUTES: RouteDoc[] = [
  {
    method: 'post',
    path: '/v1/documents',
    summary: 'Ingest a document: chunk it, store its manifest, enqueue precompute of its chunk caches',
    body: DocumentBody,
    responses: {
      202: 'accepted: { id, chunks, enqueued }',
      400: 'bad field',
      413: 'body too large, or a given chunk over CHUNK_TOKEN_BUDGET tokens',
      415: 'unsupported Content-Encoding or charset',
      503: 'Redis, store or model unavailable',
    },
  },
  {
    method: 'get',
    path: '/v1/documents',
    summary: 'Documents in id order, a page at a time, each with its status',
    query: {
      limit: 'documents per page, 1-1000 (default 100)',
      cursor: 'the nextCursor of the previous page (the last id it listed)',
    },
    responses: {
      200: '{ documents: [{ id, status, progress, chunks (count), metadata, createdAt, updatedAt }], nextCursor }',
      400: 'bad limit or cursor',
    },
  },
  {
    method: 'get',
    path: '/v1/documents/{id}',
    summary: "A document's status and per-chunk progress",
    params: { id: documentIdSchema },
    responses: {
      200: '{ id, status, progress, chunks, metadata, createdAt, updatedAt }',
      400: 'bad id',
      404: 'no such document',
    },
  },
  {
    method: 'delete',
    path: '/v1/documents/{id}',
    summary: 'Delete a document; chunk caches no other document uses are deleted',
    params: { id: documentIdSchema },
    responses: { 200: '{ id, deleted: true, chunksDeleted }', 400: 'bad id', 404: 'no such document' },
  },
  {
    method: 'post',
    path: '/v1/query',
    summary:
      'Answer a question over the chunks retrieval picks from documents (or the whole corpus), or over raw chunks, in a blend mode (stream: true answers with Server-Sent Events)',
    body: QueryBody,
    query: { async: '1 or true: answer 202 { jobId } at once; poll GET /v1/jobs/{id}' },
    responses: {
      200: '{ jobId, answer, tokens, mode, finishReason, template, ttftMs, promptTokens, prefixTokens, contextTokens, recomputedTokens, ratio?, autoRatio?, retrieval?: { chunks: [{ document, index, score, tokens }], leftOut, budget, order }, timings, cache }',
      202: '{ jobId } (async)',
      400: 'bad field, or maxTokens does not fit the model',
      404: 'a named document does not exist',
      413: 'the question or raw chunks do not fit the context, or the documents hold over MAX_QUERY_CHUNKS chunks',
      503: 'Redis or the model unavailable',
      504: 'not finished within QUERY_TIMEOUT_MS (the query is cancelled): { error: { jobId } }',
    },
  },
  {
    method: 'get',
    path: '/v1/jobs/{id}',
    summary: "A query job's state, and its result or error once finished",
    params: { id: JobId },
    responses: { 200: '{ jobId, state, result?, error? }', 400: 'bad id', 404: 'no such job' },
  },
  {
    method: 'get',
    path: '/v1/models',
    summary: 'OpenAI-compatible: the served model',
    responses: {
      200: '{ object: "list", data: [{ id, object: "model", created, owned_by, cacheblend: { calibration } }] }',
    },
  },
  {
    method: 'post',
    path: '/v1/chat/completions',
    summary:
      'OpenAI-compatible chat completion (stream: SSE chunks, then [DONE]); extensions: documents, chunks, cacheblend',
    body: ChatCompletionBody,
    responses: {
      200: '{ id, object: "chat.completion", created, model, choices: [{ index, message, finish_reason }], usage, cacheblend }',
      400: "bad field (OpenAI's error shape: { error: { message, type, code, param } })",
      404: 'unknown model or document',
      503: 'Redis or the model unavailable',
      504: 'not finished within QUERY_TIMEOUT_MS',
    },
  },
  {
    method: 'post',
    path: '/v1/completions',
    summary:
      'OpenAI-compatible completion of a prompt (no template by default); extensions: documents, chunks, cacheblend',
    body: CompletionBody,
    responses: {
      200: '{ id, object: "text_completion", created, model, choices: [{ index, text, finish_reason }], usage, cacheblend }',
      400: "bad field (OpenAI's error shape)",
      404: 'unknown model or document',
      503: 'Redis or the model unavailable',
      504: 'not finished within QUERY_TIMEOUT_MS',
    },
  },
  { method: 'get', path: '/healthz', summary: 'Liveness', responses: { 200: '{ status: "ok" }' } },
  {
    method: 'get',
    path: '/readyz',
    summary:
      'Readiness: Redis reachable and durable, store writable, model loaded, a blend worker live, queue not full',
    responses: { 200: '{ status: "ready", checks }', 503: 'not ready: { error: { checks } }' },
  },
  {
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics (text format); Bearer METRICS_TOKEN when set or when API_KEYS is set',
    responses: { 200: 'metrics', 401: 'metrics token missing or wrong' },
  },
  { method: 'get', path: '/openapi.json', summary: 'This document', responses: { 200: 'OpenAPI 3.1' } },
];

const ErrorBody = z.object({
  error: z.object({
    code: z
      .string()
      .describe('stable code: INVALID_ARGUMENT, NOT_FOUND, PAYLOAD_TOO_LARGE, UNAVAILABLE, TIMEOUT, …'),
    message: z.string(),
    field: z.string().optional().describe('the request field at fault (400)'),
    jobId: z.string().optional().describe('the job to poll (504)'),
  }),
});

function jsonSchema(schema: z.ZodTypeAny): Record<string, unknown> {
  // `io: 'input'`: what a client may send (fields with defaults are optional).
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io: 'input' }) as Record<string, unknown>;
  return rest;
}

/** What every /v1 route may also answer: authentication (API_KEYS) and per-key rate limits. */
const V1_RESPONSES: Record<number, string> = {
  401: 'no or unknown API key (when API_KEYS is set)',
  429: 'rate limited (RATE_LIMIT_PER_MINUTE) or the query queue is full (QUERY_QUEUE_LIMIT); see Retry-After',
};

function operation(r: RouteDoc): Record<string, unknown> {
  const v1 = r.path.startsWith('/v1/');
  const parameters = [
    ...Object.entries(r.params ?? {}).map(([name, s]) => ({
      name,
      in: 'path',
      required: true,
      schema: jsonSchema(s),
    })),
    ...Object.entries(r.query ?? {}).map(([name, description]) => ({
      name,
      in: 'query',
      required: false,
      description,
      schema: { type: 'string' },
    })),
  ];
  const responses = Object.fromEntries(
    Object.entries({ ...r.responses, ...(v1 && V1_RESPONSES) }).map(([status, description]) => [
      status,
      Number(status) >= 400
        ? { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }
        : { description },
    ]),
  );
  return {
    summary: r.summary,
    ...(v1 && { security: [{ apiKey: [] }, {}] }),
    ...(parameters.length > 0 && { parameters }),
    ...(r.body && {
      requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(r.body) } } },
    }),
    responses,
  };
}

let cached: Record<string, unknown> | undefined;

export function openApiDocument(): Record<string, unknown> {
  if (cached) return cached;
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of ROUTES) (paths[r.path] ??= {})[r.method] = operation(r);
  cached = {
    openapi: '3.1.0',
    info: {
      title: 'cacheblend',
      version: '0.1.0',
      description: 'Retrieval-augmented answers over precomputed chunk KV caches (CacheBlend).',
    },
    paths,
    components: {
      schemas: { Error: jsonSchema(ErrorBody) },
      securitySchemes: {
        apiKey: { type: 'http', scheme: 'bearer', description: 'a key from API_KEYS (tenant:key,…)' },
      },
    },
  };
  return cached;
}
