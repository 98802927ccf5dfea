/**
 * What every reply carries and every body passes before a route sees it: security headers, a JSON body
 * parser that refuses deep nesting before parsing, and error messages that never leak server paths.
 */
import { HttpError } from '../errors.js';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';

/** JSON nested deeper than this is refused (400) before it is parsed; no request needs more. */
export const MAX_JSON_DEPTH = 64;

/**
 * `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` (replies are per caller and per moment:
 * never cached by a proxy), and a `Server` header that names the service, not its stack. Three headers
 * are written here rather than pulling in helmet, whose other headers concern HTML pages this API never
 * serves.
 */
export function securityHeaders(): RequestHandler {
  return (_req: Request, res: Response, next: NextFunction) => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Server', 'cacheblend');
    next();
  };
}

/** An error body-parser passes on with the status it carries (see api/errors.ts). */
class TooDeepError extends Error {
  readonly status = 400;
  readonly type = 'entity.too.deep';
  readonly expose = true;
}

/**
 * Deepest nesting of `{`/`[` in JSON text, stopping as soon as it passes `limit` (strings skipped). One
 * pass over the bytes: body-parser has no depth option, and parsing first would already have paid for
 * the nesting.
 */
export function jsonDepthExceeds(buf: Buffer, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** express.json with MAX_BODY_BYTES and the depth check. */
/**
 * A request body that is not JSON (by its Content-Type) is a 415 naming the type, before it is read; a
 * request without a body passes (its route says what it misses).
 */
export function requireJsonBody(): RequestHandler {
  return (req, _res, next) => {
    const hasBody =
      req.headers['transfer-encoding'] !== undefined ||
      (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    if (!hasBody || req.is(['application/json', 'application/*+json'])) return next();
    const type = req.headers['content-type'] ?? 'none';
    next(
      new HttpError(
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        `body: Content-Type must be application/json, got ${type}`,
        {
          field: 'body',
        },
      ),
    );
  };
}

export function jsonBody(limit: number): RequestHandler {
  return express.json({
    limit,
    verify: (_req, _res, buf) => {
      if (jsonDepthExceeds(buf, MAX_JSON_DEPTH)) {
        throw new TooDeepError(`body: JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
      }
    },
  });
}

/** Absolute filesystem paths (and file:// URLs) in a message, replaced so 5xx replies reveal no layout. */
export function withoutPaths(message: string): string {
  return message
    .replace(/file:\/\/[^\s'",;)]*/g, '<path>')
    .replace(/(^|[\s('"=])\/[^\s/'",;:)]+(?:\/[^\s/'",;:)]*)*/g, '$1<path>');
}
