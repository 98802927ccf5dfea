/**
 * OpenAI's reply shapes for a finished (or streaming) blend job: choices, usage with
 * `prompt_tokens_details.cached_tokens`, logprobs (chat's `content` list, completions' parallel lists),
 * and errors as `{"error": {"message", "type", "param", "code"}}`.
 */
import type { BlendJobResult, TextLogprob } from '../../core/queue/contracts.js';
import { HttpError } from '../errors.js';
import type { ExtensionBody } from '../replies.js';
import { withoutPaths } from '../middleware/hardening.js';

export type Kind = 'chat' | 'completion';

/** The paths whose errors take OpenAI's shape (including 401s and 429s from the middleware before them). */
export function isOpenAiPath(path: string): boolean {
  return /^\/v1\/(models|chat\/completions|completions)\/?$/.test(path);
}

const bytes = (s: string) => [...Buffer.from(s, 'utf8')];

/** Chat's `logprobs`: `{content: [{token, logprob, bytes, top_logprobs}], refusal}`. */
function chatLogprobs(lps: readonly TextLogprob[]) {
  return {
    content: lps.map((lp) => ({
      token: lp.token,
      logprob: lp.logprob,
      bytes: bytes(lp.token),
      top_logprobs: lp.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytes(t.token) })),
    })),
    refusal: null,
  };
}

/** Completions' `logprobs`: parallel lists; text offsets are into the completion's text. */
function completionLogprobs(lps: readonly TextLogprob[]) {
  const offsets: number[] = [];
  let at = 0;
  for (const lp of lps) {
    offsets.push(at);
    at += lp.token.length;
  }
  return {
    tokens: lps.map((lp) => lp.token),
    token_logprobs: lps.map((lp) => lp.logprob),
    top_logprobs: lps.map((lp) => Object.fromEntries(lp.top.map((t) => [t.token, t.logprob]))),
    text_offset: offsets,
  };
}

export function logprobsOf(kind: Kind, lps: readonly TextLogprob[] | undefined) {
  if (!lps) return null;
  return kind === 'chat' ? chatLogprobs(lps) : completionLogprobs(lps);
}

export function choice(
  kind: Kind,
  content: string | null,
  finishReason: string | null,
  delta: boolean,
  logprobs: object | null = null,
) {
  if (kind === 'completion') return { index: 0, text: content ?? '', finish_reason: finishReason, logprobs };
  const message = { role: 'assistant', content };
  return delta
    ? { index: 0, delta: content === null ? {} : { content }, finish_reason: finishReason, logprobs }
    : { index: 0, message, finish_reason: finishReason, logprobs };
}

export function usage(r: BlendJobResult) {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.tokens.length,
    total_tokens: r.promptTokens + r.tokens.length,
    prompt_tokens_details: { cached_tokens: r.cachedTokens },
  };
}

/** What the service adds to an OpenAI reply: how the answer was computed. */
export function extension(r: BlendJobResult, jobId: string): ExtensionBody {
  const { answer: _a, tokens: _t, finishReason: _f, logprobs: _l, ...rest } = r;
  return { jobId, ...rest };
}

function errorType(status: number): string {
  if (status >= 500) return 'server_error';
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  return 'invalid_request_error';
}

/** OpenAI's codes for the service's own, where OpenAI has one; the others in OpenAI's lower case. */
const OPENAI_CODES: Record<string, string> = {
  UNAUTHENTICATED: 'invalid_api_key',
  RATE_LIMITED: 'rate_limit_exceeded',
  INTERNAL: 'server_error',
};

/** An error in OpenAI's shape (the body's `error`), with OpenAI-style codes. */
export function openAiError(e: HttpError) {
  const message = e.status >= 500 ? withoutPaths(e.message) : e.message;
  return {
    message,
    type: errorType(e.status),
    param: (e.extra.field as string | undefined) ?? null,
    code: OPENAI_CODES[e.code] ?? e.code.toLowerCase(),
  };
}
