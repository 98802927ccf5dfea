/**
 * The OpenAPI 3.1 document served at GET /openapi.json, generated from the request schemas in schemas.ts
 * (zod's JSON Schema output), so the document and the validation can never disagree. Each route of the
 * API is listed once here with its request schema and the replies it can give.
 */
import { z } from 'zod';
import { DocumentBody, JobId, QueryBody } from './schemas.js';
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
      413: 'body too large',
      503: 'Redis, store or model unavailable',
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
      'Answer a question over documents in a blend mode (stream: true answers with Server-Sent Events)',
    body: QueryBody,
    query: { async: '1 or true: answer 202 { jobId } at once; poll GET /v1/jobs/{id}' },
    responses: {
      200: '{ jobId, answer, tokens, mode, ttftMs, promptTokens, contextTokens, recomputedTokens, ratio?, timings, cache }',
      202: '{ jobId } (async)',
      400: 'bad field, or the prompt does not fit the model',
      404: 'a named document does not exist',
      503: 'Redis or the model unavailable',
      504: 'not finished within QUERY_TIMEOUT_MS: { error: { jobId } } to poll',
    },
  },
  {
    method: 'get',
    path: '/v1/jobs/{id}',
    summary: "A query job's state, and its result or error once finished",
    params: { id: JobId },
    responses: { 200: '{ jobId, state, result?, error? }', 400: 'bad id', 404: 'no such job' },
  },
  { method: 'get', path: '/healthz', summary: 'Liveness', responses: { 200: '{ status: "ok" }' } },
  {
    method: 'get',
    path: '/readyz',
    summary: 'Readiness: Redis, object store and model',
    responses: { 200: '{ status: "ready", checks }', 503: 'not ready: { error: { checks } }' },
  },
  {
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics (text format)',
    responses: { 200: 'metrics' },
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

function operation(r: RouteDoc): Record<string, unknown> {
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
    Object.entries(r.responses).map(([status, description]) => [
      status,
      Number(status) >= 400
        ? { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }
        : { description },
    ]),
  );
  return {
    summary: r.summary,
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
    components: { schemas: { Error: jsonSchema(ErrorBody) } },
  };
  return cached;
}
