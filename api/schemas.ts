/**
 * Request schemas of the HTTP API (zod), apart from the routes that use them, and the parsing that turns a
 * schema failure into a 400 naming the field.
 */
import { z } from 'zod';
import {
  ATTENTION_SOURCES,
  BLEND_MODES,
  DEVIATION_METRICS,
  MAX_SINK_TOKENS,
  SELECTION_STRATEGIES,
  type BlendMode,
} from '../core/blend/index.js';
import type { BlendSelection } from '../core/queue/contracts.js';
import { documentIdSchema } from '../core/documents/manifest.js';
import { HttpError } from './errors.js';

/**
 * The path of the first `__proto__` key in a parsed JSON value, or null. Such a key cannot be kept "as
 * given": copying it into an object sets that object's prototype instead (the key silently vanishes, or
 * pollutes whoever merges the metadata later), so it is refused. Iterative: nesting depth is the client's.
 */
function protoKeyPath(value: unknown): (string | number)[] | null {
  // Each entry links to its parent, so a deeply nested body costs linear time, not a path copy per level.
  interface Step {
    value: unknown;
    key: string | number;
    up: Step | null;
  }
  const stack: Step[] = [{ value, key: '', up: null }];
  while (stack.length > 0) {
    const step = stack.pop()!;
    const v = step.value;
    if (typeof v !== 'object' || v === null) continue;
    for (const key of Object.keys(v)) {
      const child: Step = {
        value: (v as Record<string, unknown>)[key],
        key: Array.isArray(v) ? Number(key) : key,
        up: step,
      };
      if (key === '__proto__') {
        const path: (string | number)[] = [];
        for (let s: Step | null = child; s && s.up; s = s.up) path.unshift(s.key);
        return path;
      }
      stack.push(child);
    }
  }
  return null;
}

const metadata = z
  .unknown()
  .superRefine((v, ctx) => {
    const path = protoKeyPath(v);
    if (path) {
      ctx.addIssue({
        code: 'custom',
        path,
        message: 'the key "__proto__" is not allowed in metadata (rename it)',
        abort: true,
      });
    }
  })
  .pipe(z.record(z.string(), z.unknown()));

export const DocumentBody = z
  .object({
    id: documentIdSchema.optional(),
    text: z.string().min(1, 'must not be empty').optional(),
    chunks: z
      .array(z.string().min(1, 'must not be empty'))
      .min(1, 'must hold at least one chunk')
      .max(10_000, 'must hold at most 10000 chunks')
      .optional(),
    metadata: metadata.optional(),
  })
  .strict();

const question = z.string().min(1, 'must not be empty').max(100_000, 'is too long');
const system = z.string().max(100_000, 'is too long');
const documentList = z
  .array(documentIdSchema)
  .min(1, 'must name at least one document')
  .max(1_000, 'must name at most 1000');
const rawChunks = z
  .array(z.string().min(1, 'must not be empty').max(100_000, 'is too long'))
  .min(1, 'must hold at least one chunk')
  .max(1_000, 'must hold at most 1000 chunks');
const mode = z
  .enum(BLEND_MODES as [string, ...string[]], { error: `must be one of ${BLEND_MODES.join(', ')}` })
  .transform((m) => m as BlendMode);
const ratio = z.union([z.number().min(0).max(1), z.literal('auto')], {
  error: 'must be a number in [0, 1] or "auto"',
});
const strategy = z.enum(SELECTION_STRATEGIES as [string, ...string[]], {
  error: `must be one of ${SELECTION_STRATEGIES.join(', ')}`,
});
/** How blend picks the tokens it recomputes: a strategy's name, or it with its deviation metric and sinks. */
const selection = z
  .union(
    [
      strategy,
      z
        .object({
          strategy: strategy.optional(),
          metric: z
            .enum(DEVIATION_METRICS as [string, ...string[]], { error: 'must be k, v or kv' })
            .optional(),
          attention: z.enum(ATTENTION_SOURCES as [string, ...string[]]).optional(),
          sinkTokens: z.number().int('must be an integer').min(0).max(MAX_SINK_TOKENS).optional(),
        })
        .strict(),
    ],
    {
      error: `must be one of ${SELECTION_STRATEGIES.join(', ')}, or { strategy, metric: k|v|kv, attention: check|lookahead, sinkTokens }`,
    },
  )
  .transform((s) => (typeof s === 'string' ? { strategy: s } : s) as BlendSelection);
const template = z.enum(['auto', 'none', 'chat'], { error: 'must be one of auto, none, chat' });
const retrievalTopK = z.number().int('must be an integer').min(1, 'must be at least 1').max(10_000);
const order = z.enum(['document', 'relevance'], { error: 'must be document or relevance' });
const stopList = z.union(
  [z.string().min(1, 'must not be empty'), z.array(z.string().min(1, 'must not be empty')).max(16)],
  { error: 'must be a string or a list of at most 16 non-empty strings' },
);
const seed = z
  .number()
  .int('must be an integer')
  .min(0)
  .max(2 ** 32 - 1);
const topP = z.number().gt(0, 'must be in (0, 1]').max(1, 'must be in (0, 1]');
const sampleTopK = z.number().int('must be an integer').min(1, 'must be at least 1');

/** `documents` and `chunks` are alternatives; neither means the whole corpus. */
function oneSource(b: { documents?: unknown; chunks?: unknown }, ctx: z.RefinementCtx): void {
  if (b.documents !== undefined && b.chunks !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['chunks'], message: 'give documents or chunks, not both' });
  }
}

/**
 * POST /v1/query. Reply (200): `{jobId, answer, tokens, mode, finishReason, template, ttftMs, promptTokens,
 * prefixTokens, contextTokens, recomputedTokens, cachedTokens, matched?, ratio?, autoRatio?, retrieval?, timings, cache}` — see
 * BlendJobResult (core/queue/contracts.ts) and docs/api-retrieval.md.
 */
export const QueryBody = z
  .object({
    question,
    /** Rank the chunks of these documents; the whole corpus when neither this nor `chunks` is given. */
    documents: documentList.optional(),
    /** Raw chunk texts, used as given (no retrieval). */
    chunks: rawChunks.optional(),
    system: system.optional(),
    template: template.default('auto'),
    /** At most this many chunks (retrieval). */
    topK: retrievalTopK.optional(),
    order: order.default('document'),
    /** Absent: blend, or full where the cost plan predicts the caches would load slower (pinned when given). */
    mode: mode.optional(),
    ratio: ratio.optional(),
    selection: selection.optional(),
    maxTokens: z.number().int('must be an integer').min(0).max(4096).default(32),
    temperature: z.number().min(0, 'must be >= 0').max(10).default(0),
    topP: topP.optional(),
    /** Sampling's top-k (`topK` is retrieval's). */
    sampleTopK: sampleTopK.optional(),
    stop: stopList.optional(),
    seed: seed.default(0),
    stream: z.boolean().default(false),
    /** Add `explain`: each context token's text and which ones were recomputed. */
    explain: z.boolean().default(false),
  })
  .strict()
  .superRefine(oneSource);

/** GET /v1/documents query string. Reply: `{documents: DocumentSummary[], nextCursor: string | null}`. */
export const DocumentListQuery = z
  .object({
    limit: z
      .string()
      .regex(/^\d+$/, 'must be an integer from 1 to 1000')
      .transform(Number)
      .pipe(z.number().int().min(1, 'must be at least 1').max(1_000, 'must be at most 1000'))
      .default(100),
    cursor: documentIdSchema.optional(),
  })
  .strict();

/** The `cacheblend` extension of the OpenAI-compatible requests. */
const CacheblendOptions = z
  .object({
    mode: mode.optional(),
    ratio: ratio.optional(),
    selection: selection.optional(),
    topK: retrievalTopK.optional(),
    order: order.optional(),
    template: template.optional(),
    /** Search the tenant's whole corpus when neither `documents` nor `chunks` is given. */
    retrieve: z.boolean().optional(),
  })
  .strict();

/** Fields both OpenAI-compatible endpoints take (fields they do not implement are refused first: openai/fields.ts). */
const openAiCommon = {
  model: z.string().min(1, 'must not be empty'),
  max_tokens: z.number().int('must be an integer').min(0).max(4096).nullish(),
  max_completion_tokens: z.number().int('must be an integer').min(0).max(4096).nullish(),
  temperature: z.number().min(0, 'must be >= 0').max(2, 'must be <= 2').nullish(),
  top_p: topP.nullish(),
  top_k: sampleTopK.nullish(),
  stop: stopList.nullish(),
  seed: z.number().int('must be an integer').nullish(),
  n: z.literal(1, { error: 'only 1 is supported' }).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).strict().nullish(),
  documents: documentList.optional(),
  chunks: rawChunks.optional(),
  cacheblend: CacheblendOptions.optional(),
};

const chatMessage = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant'], {
    error: 'must be system, developer, user or assistant',
  }),
  // A message is held to the native question's length limit: refused by its length, before tokenizing.
  content: z.union(
    [
      z.string().max(100_000, 'is too long'),
      z.array(
        z.object({
          type: z.literal('text', { error: 'only text parts are supported' }),
          text: z.string().max(100_000, 'is too long'),
        }),
      ),
    ],
    { error: 'must be a string or a list of text parts' },
  ),
});

/** POST /v1/chat/completions (OpenAI's shape, plus `documents`, `chunks`, `cacheblend`). */
export const ChatCompletionBody = z
  .object({
    ...openAiCommon,
    messages: z.array(chatMessage).min(1, 'must hold at least one message').max(1_000),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int('must be an integer').min(0).max(20, 'must be at most 20').nullish(),
  })
  .superRefine(oneSource);

/** POST /v1/completions (OpenAI's shape, plus `documents`, `chunks`, `cacheblend`). */
export const CompletionBody = z
  .object({
    ...openAiCommon,
    prompt: z.union([question, z.array(question).length(1, 'only one prompt is supported')], {
      error: 'must be a non-empty string',
    }),
    logprobs: z.number().int('must be an integer').min(0).max(20, 'must be at most 20').nullish(),
  })
  .superRefine(oneSource);

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
  const tooLong = tooLongError(issue);
  if (tooLong) throw tooLong;
  const keys = issue.code === 'unrecognized_keys' ? (issue as { keys: string[] }).keys : [];
  const field = keys.length ? keys[0] : issue.path.map(String).join('.') || 'body';
  const message = keys.length
    ? 'is not a known field'
    : issue.code === 'invalid_type' && valueAt(body, issue.path) === undefined
      ? 'is required'
      : issue.message;
  throw new HttpError(400, 'INVALID_ARGUMENT', `${field}: ${message}`, { field });
}

/** The value at `path` in a parsed body (undefined where the path leads nowhere). */
function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let v = body;
  for (const key of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, key)) return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

/**
 * A text or list over its limit is a 413 naming the limit, on every route: the same status as a question
 * that cannot fit the model's context, or a body over MAX_BODY_BYTES. (Numbers over their range are 400s.)
 */
function tooLongError(issue: z.core.$ZodIssue): HttpError | null {
  if (issue.code !== 'too_big' || (issue.origin !== 'string' && issue.origin !== 'array')) return null;
  const field = issue.path.map(String).join('.') || 'body';
  const what = issue.origin === 'string' ? 'characters' : 'items';
  return new HttpError(
    413,
    'PAYLOAD_TOO_LARGE',
    `${field}: longer than the limit of ${Number(issue.maximum)} ${what}`,
    { field },
  );
}

/** Parse a path parameter; a failure is a 400 naming it. */
export function parseParam<T extends z.ZodTypeAny>(schema: T, raw: string, name = 'id'): z.infer<T> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  throw new HttpError(400, 'INVALID_ARGUMENT', `${name}: ${r.error.issues[0].message}`, { field: name });
}
