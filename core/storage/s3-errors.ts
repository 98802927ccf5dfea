/**
 * What an S3 SDK or socket error means for the caller: a missing key, a store that is unavailable (worth
 * retrying: 5xx, 408, 429, timeouts, network codes) or a storage error, and a short description of it.
 */
import { errorMessage } from '../errors.js';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);
const TIMEOUT_NAMES = new Set([
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'NetworkingError',
]);

/** A plain Error with the name, code, HTTP status and message of an SDK or socket error. */
export function slim(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  const out = new Error(err.message) as Error & { code?: string; status?: number };
  out.name = err.name;
  const code = codeOf(err);
  if (code !== undefined) out.code = code;
  const status = statusOf(err);
  if (status !== undefined) out.status = status;
  if (err.stack) out.stack = err.stack;
  return out;
}

export function nameOf(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

export function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

export function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null || !('$metadata' in err)) return undefined;
  const meta = err.$metadata as { httpStatusCode?: number } | undefined;
  return meta?.httpStatusCode;
}

export function isMissingKey(err: unknown): boolean {
  const name = nameOf(err);
  return name === 'NoSuchKey' || (name === 'NotFound' && statusOf(err) === 404);
}

export function isUnavailable(err: unknown): boolean {
  const status = statusOf(err);
  if (status !== undefined) return status >= 500 || status === 408 || status === 429;
  const name = nameOf(err) ?? '';
  if (TIMEOUT_NAMES.has(name) || NETWORK_CODES.has(codeOf(err) ?? '')) return true;
  // Any other failure without an HTTP response (e.g. a socket closed mid-body) is transport trouble too,
  // except a missing-credentials error, which retrying will not fix.
  return name !== 'CredentialsProviderError';
}

export function describeError(err: unknown): string {
  const parts = [nameOf(err), codeOf(err), statusOf(err)?.toString()].filter(Boolean);
  const message = errorMessage(err);
  return parts.length > 0 ? `${message || '(no message)'} [${parts.join(' ')}]` : message;
}
