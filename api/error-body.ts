/**
 * The one place an HttpError becomes the body a client reads: OpenAI's shape on the OpenAI routes, the
 * service's `{code, message, ...extra}` elsewhere; a server error's message never shows file paths.
 */
import type { HttpError } from './errors.js';
import { withoutPaths } from './middleware/hardening.js';
import { isOpenAiPath, openAiError } from './openai/shape.js';

/** The service's own error body (the `error` of a JSON reply or of a stream's error event). */
export function serviceError(e: HttpError): Record<string, unknown> {
  const message = e.status >= 500 ? withoutPaths(e.message) : e.message;
  return { code: e.code, message, ...e.extra };
}

/** The `error` of a reply to a request for `path`. */
export function errorBodyFor(path: string, e: HttpError): Record<string, unknown> {
  return isOpenAiPath(path) ? openAiError(e) : serviceError(e);
}
