/**
 * Errors as HTTP replies: every error is `{"error": {"code", "message"}}` (plus `field` for a bad request
 * field, `jobId` for a query that timed out or failed), never a stack trace, and a 5xx message never
 * carries a server path. Errors from Express and body-parser (bad encodings, charsets, percent-escapes)
 * keep their 4xx status.
 */
import { CacheBlendError, errorMessage } from '../core/errors.js';
import { withoutPaths } from './middleware/hardening.js';

/** An error already shaped for HTTP. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
    /** Reply headers that go with the error (e.g. Retry-After on a 429). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** HTTP status of each CacheBlendError code; anything else is a 500. */
export const STATUS: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  KV_MISMATCH: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNAUTHENTICATED: 401,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
  STORAGE: 503,
  TIMEOUT: 504,
  CONFIG: 500,
};

/** The `field` of a reply: the request field a 4xx error names (a 5xx names none). */
export function fieldOf(code: string, field: string | undefined): { field?: string } {
  const status = STATUS[code] ?? 500;
  return field !== undefined && status < 500 ? { field } : {};
}

/** Errors Express and body-parser raise for a bad request (http-errors: a 4xx `status`). */
function requestError(err: unknown): HttpError | null {
  const e = err as { type?: string; status?: number; limit?: number; name?: string };
  if (typeof e?.status !== 'number' || e.status < 400 || e.status >= 500) return null;
  const body = { field: 'body' };
  switch (e.type) {
    case 'entity.too.large':
      return new HttpError(
        413,
        'PAYLOAD_TOO_LARGE',
        `body: larger than the ${e.limit} byte limit (MAX_BODY_BYTES)`,
        body,
      );
    case 'entity.parse.failed':
      return new HttpError(400, 'INVALID_JSON', 'body: is not valid JSON', body);
    case 'entity.too.deep':
      return new HttpError(400, 'INVALID_JSON', errorMessage(err), body);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', `body: ${errorMessage(err)}`, body);
  }
  if (e.name === 'URIError') {
    return new HttpError(400, 'INVALID_ARGUMENT', 'path: malformed percent-escape in the URL', {
      field: 'path',
    });
  }
  if (e.type === undefined) {
    // zlib's complaint about a body that does not match its Content-Encoding (gzip, deflate, br).
    return new HttpError(
      400,
      'INVALID_ARGUMENT',
      `body: cannot decode the content encoding (${errorMessage(err)})`,
      body,
    );
  }
  return new HttpError(e.status, 'INVALID_ARGUMENT', `body: ${errorMessage(err)}`, body);
}

/** Body-parser errors (their `type`), CacheBlendErrors (their code) and the rest (500) as HttpErrors. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  const request = requestError(err);
  if (request) return request;
  if (err instanceof CacheBlendError) {
    const status = STATUS[err.code] ?? 500;
    return new HttpError(
      status,
      err.code,
      status === 500 ? 'internal error' : status > 500 ? withoutPaths(err.message) : err.message,
      fieldOf(err.code, err.field),
    );
  }
  return new HttpError(500, 'INTERNAL', 'internal error');
}
