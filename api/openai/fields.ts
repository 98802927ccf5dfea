/**
 * Which OpenAI request fields the service implements. A field it does not implement is refused with a 400
 * naming it — never accepted and ignored, since an answer that silently drops `tools` or a penalty is not
 * the answer the client asked for. A field whose value asks for nothing (a penalty of 0, `echo: false`,
 * `best_of: 1`, no tools) is accepted: it is what the service does anyway. `null` counts as absent.
 */
import { HttpError } from '../errors.js';

type Kind = 'chat' | 'completion';

const COMMON = [
  'model',
  'max_tokens',
  'temperature',
  'top_p',
  'top_k',
  'stop',
  'seed',
  'n',
  'stream',
  'stream_options',
  'logprobs',
  // The service's extensions.
  'documents',
  'chunks',
  'cacheblend',
];

const IMPLEMENTED: Record<Kind, ReadonlySet<string>> = {
  chat: new Set([...COMMON, 'messages', 'max_completion_tokens', 'top_logprobs']),
  completion: new Set([...COMMON, 'prompt']),
};

const isEmptyObject = (v: unknown) =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;

/** Fields accepted only with the value that asks for nothing, and how that value reads. */
const NEUTRAL: Record<string, [(v: unknown) => boolean, string]> = {
  presence_penalty: [(v) => v === 0, '0'],
  frequency_penalty: [(v) => v === 0, '0'],
  repetition_penalty: [(v) => v === 1, '1'],
  logit_bias: [isEmptyObject, '{}'],
  echo: [(v) => v === false, 'false'],
  best_of: [(v) => v === 1, '1'],
  tools: [(v) => Array.isArray(v) && v.length === 0, '[]'],
  tool_choice: [(v) => v === 'none', '"none"'],
  functions: [(v) => Array.isArray(v) && v.length === 0, '[]'],
  function_call: [(v) => v === 'none', '"none"'],
  response_format: [
    (v) => isEmptyObject(v) || (v as { type?: unknown })?.type === 'text',
    '{"type": "text"}',
  ],
};

function refuse(field: string, message: string): HttpError {
  return new HttpError(400, 'unsupported_parameter', `${field}: ${message}`, { field });
}

/** 400 for the first field of `body` this server does not implement (or implements only as a no-op). */
export function refuseUnsupported(kind: Kind, body: unknown): void {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return; // parseBody says why
  for (const [field, value] of Object.entries(body)) {
    if (value === null || IMPLEMENTED[kind].has(field)) continue;
    // Own keys only: a body's `__proto__`, `constructor` or `toString` must not find Object.prototype's.
    const neutral = Object.hasOwn(NEUTRAL, field) ? NEUTRAL[field] : undefined;
    if (!neutral) throw refuse(field, 'is not supported by this server');
    if (!neutral[0](value)) throw refuse(field, `is not supported by this server (only ${neutral[1]})`);
  }
  const b = body as Record<string, unknown>;
  if (b.stream_options != null && b.stream !== true) {
    throw refuse('stream_options', 'is only allowed with stream: true');
  }
  if (b.stream === true && b.logprobs != null && b.logprobs !== false) {
    throw refuse('logprobs', 'is not supported with stream: true (ask without streaming)');
  }
  if (kind === 'chat' && b.top_logprobs != null && b.logprobs !== true) {
    throw refuse('top_logprobs', 'needs logprobs: true');
  }
}
