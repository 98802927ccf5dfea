/**
 * Tenants: with API_KEYS set, every /v1 request needs `Authorization: Bearer <key>`, and the key's tenant
 * owns what the request creates and is the only one that finds it (other tenants get 404). Unset, the
 * API is open and everything belongs to DEFAULT_TENANT (a warning says so at start). GET /metrics has its
 * own token (METRICS_TOKEN), or its own port (METRICS_PORT).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { DEFAULT_TENANT, type Config } from '../../core/config/index.js';
import { HttpError } from '../errors.js';

/** Who a request acts for: its tenant, and a stable id of its key (for per-key limits; null when open). */
export interface Principal {
  tenant: string;
  keyId: string | null;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

function bearer(req: Request): string | null {
  return /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '')?.[1] ?? null;
}

function unauthenticated(res: Response, message: string): HttpError {
  res.setHeader('WWW-Authenticate', 'Bearer realm="cacheblend"');
  return new HttpError(401, 'UNAUTHENTICATED', message);
}

/** Sets `res.locals.principal`; 401 without a known key while API_KEYS is set. */
export function authenticate(config: Config): RequestHandler {
  // Keys are looked up by their sha256: the map's timing can only reveal digests, never a key's prefix.
  const byDigest = new Map(config.apiKeys.map((k) => [digest(k.key).toString('hex'), k.tenant]));
  return (req: Request, res: Response, next: NextFunction) => {
    if (byDigest.size === 0) {
      res.locals.principal = { tenant: DEFAULT_TENANT, keyId: null } satisfies Principal;
      next();
      return;
    }
    const key = bearer(req);
    if (key === null) return next(unauthenticated(res, 'send an API key: Authorization: Bearer <key>'));
    const id = digest(key).toString('hex');
    const tenant = byDigest.get(id);
    if (tenant === undefined) return next(unauthenticated(res, 'unknown API key'));
    res.locals.principal = { tenant, keyId: id.slice(0, 32) } satisfies Principal;
    next();
  };
}

export function principalOf(res: Response): Principal {
  const p = res.locals.principal as Principal | undefined;
  if (!p) throw new HttpError(500, 'INTERNAL', 'request reached a route without authentication');
  return p;
}

export function tenantOf(res: Response): string {
  return principalOf(res).tenant;
}

/**
 * GET /metrics on the API port: open while the API is open and no METRICS_TOKEN is set; otherwise only
 * with `Bearer <METRICS_TOKEN>` (with API_KEYS and no token it is refused: use METRICS_PORT or set one).
 */
export function metricsAccess(config: Config): RequestHandler {
  const token = config.metricsToken === null ? null : digest(config.metricsToken);
  const closed = config.apiKeys.length > 0;
  return (req: Request, res: Response, next: NextFunction) => {
    if (token === null && !closed) return next();
    const given = bearer(req);
    if (token !== null && given !== null && timingSafeEqual(digest(given), token)) return next();
    const hint =
      token === null ? 'set METRICS_TOKEN, or serve metrics on METRICS_PORT' : 'send the metrics token';
    next(unauthenticated(res, `metrics need a token: ${hint}`));
  };
}

/**
 * The jobs view (Bull Board) shows every tenant's queued work, so with API_KEYS set it needs a key of the
 * DEFAULT_TENANT, the operator's (other keys: 403). Browsers cannot send a Bearer header on navigation,
 * so HTTP Basic with the key as password is accepted too, and a 401 asks the browser for it.
 */
export function operatorAccess(config: Config): RequestHandler {
  const operator = new Set(
    config.apiKeys.filter((k) => k.tenant === DEFAULT_TENANT).map((k) => digest(k.key).toString('hex')),
  );
  const known = new Set(config.apiKeys.map((k) => digest(k.key).toString('hex')));
  return (req: Request, res: Response, next: NextFunction) => {
    if (known.size === 0) return next();
    const key = bearer(req) ?? basicPassword(req);
    if (key === null || !known.has(digest(key).toString('hex'))) {
      res.setHeader('WWW-Authenticate', 'Basic realm="cacheblend jobs", charset="UTF-8"');
      return next(
        new HttpError(
          401,
          'UNAUTHENTICATED',
          'the jobs view needs an API key (as Bearer, or Basic password)',
        ),
      );
    }
    if (!operator.has(digest(key).toString('hex'))) {
      return next(
        new HttpError(
          403,
          'FORBIDDEN',
          `the jobs view shows every tenant's jobs: it needs a key of the tenant ${DEFAULT_TENANT}`,
        ),
      );
    }
    next();
  };
}

function basicPassword(req: Request): string | null {
  const b64 = /^Basic\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '')?.[1];
  if (!b64) return null;
  const decoded = Buffer.from(b64, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? null : decoded.slice(colon + 1);
}
