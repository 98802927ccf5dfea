/**
 * Request schemas of the HTTP API (zod), apart from the routes that use them, and the parsing that turns a
 * schema failure into a 400 naming the field.
 */
import { z } from 'zod';
import { BLEND_MODES } from '../core/blend/index.js';
import { documentIdSchema } from '../core/documents/manifest.js';
import { HttpError } from './errors.js';

export const DocumentBody = z
  .object({
    id: documentIdSchema.optional(),
    text: z.string().min(1, 'must not be empty').optional(),
    chunks: z
      .array(z.string().min(1, 'must not be empty'))
      .min(1, 'must hold at least one chunk')
      .max(10_000, 'must hold at most 10000 chunks')
      .optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

export const QueryBody = z
  .object({
    question: z.string().min(1, 'must not be empty').max(100_000, 'is too long'),
    documents: z
      .array(documentIdSchema)
      .min(1, 'must name at least one document')
      .max(100, 'must name at most 100'),
    mode: z
      .enum(BLEND_MODES as [string, ...string[]], { error: `must be one of ${BLEND_MODES.join(', ')}` })
      .default('blend'),
    ratio: z.number().min(0, 'must be in [0, 1]').max(1, 'must be in [0, 1]').optional(),
    maxTokens: z.number().int('must be an integer').min(0).max(4096).default(32),
    temperature: z.number().min(0, 'must be >= 0').max(10).default(0),
    seed: z
      .number()
      .int('must be an integer')
      .min(0)
      .max(2 ** 32 - 1)
      .default(0),
    stream: z.boolean().default(false),
  })
  .strict();

export const JobId = z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'not a job id');

/** Parse a JSON body; a failure is a 400 whose message starts with the offending field. */
export function parseBody<T extends z.ZodTypeAny>(schema: T, body: unknown): z.infer<T> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(
      400,
      'INVALID_ARGUMENT',
      'body: must be a JSON object (send Content-Type: application/json)',
      { field: 'body' },
    );
  }
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const keys = issue.code === 'unrecognized_keys' ? (issue as { keys: string[] }).keys : [];
  const field = keys.length ? keys[0] : issue.path.map(String).join('.') || 'body';
  const message = keys.length
    ? 'is not a known field'
    : /received undefined$/.test(issue.message)
      ? 'is required'
      : issue.message;
  throw new HttpError(400, 'INVALID_ARGUMENT', `${field}: ${message}`, { field });
}

/** Parse a path parameter; a failure is a 400 naming it. */
export function parseParam<T extends z.ZodTypeAny>(schema: T, raw: string, name = 'id'): z.infer<T> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  throw new HttpError(400, 'INVALID_ARGUMENT', `${name}: ${r.error.issues[0].message}`, { field: name });
}
