/**
 * Errors as HTTP replies: every error is `{"error": {"code", "message"}}` (plus `field` for a bad request
 * field, `jobId` for a query that timed out or failed), never a stack trace.
 */
import { CacheBlendError, errorMessage } from '../core/errors.js';

/** An error already shaped for HTTP. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** HTTP status of each CacheBlendError code; anything else is a 500. */
export const STATUS: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  KV_MISMATCH: 409,
  UNAVAILABLE: 503,
  STORAGE: 503,
  TIMEOUT: 504,
  CONFIG: 500,
};

/** Errors from validation name their field first (`field: message`). */
export function fieldOf(message: string): string | undefined {
  return /^([A-Za-z][\w.]*): /.exec(message)?.[1];
}

/** Body-parser errors (their `type`), CacheBlendErrors (their code) and the rest (500) as HttpErrors. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  const bodyErr = err as { type?: string; status?: number; limit?: number };
  if (bodyErr?.type === 'entity.too.large') {
    return new HttpError(
      413,
      'PAYLOAD_TOO_LARGE',
      `body: larger than the ${bodyErr.limit} byte limit (MAX_BODY_BYTES)`,
      { field: 'body' },
    );
  }
  if (bodyErr?.type === 'entity.parse.failed') {
    return new HttpError(400, 'INVALID_JSON', 'body: is not valid JSON', { field: 'body' });
  }
  if (typeof bodyErr?.status === 'number' && bodyErr.status >= 400 && bodyErr.status < 500 && bodyErr.type) {
    return new HttpError(bodyErr.status, 'INVALID_ARGUMENT', `body: ${errorMessage(err)}`, { field: 'body' });
  }
  if (err instanceof CacheBlendError) {
    const status = STATUS[err.code] ?? 500;
    const field = err.code === 'INVALID_ARGUMENT' ? fieldOf(err.message) : undefined;
    return new HttpError(
      status,
      err.code,
      status === 500 ? 'internal error' : err.message,
      field ? { field } : {},
    );
  }
  return new HttpError(500, 'INTERNAL', 'internal error');
}
