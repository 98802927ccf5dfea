/**
 * One access-log line per request (pino-http) carrying a request id: the caller's `X-Request-Id` when it
 * is a sane token, else a new UUID. The id is echoed in the `X-Request-Id` reply header and travels into
 * the jobs the request creates, so worker log lines of that work carry it too.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Request } from 'express';
import { pinoHttp } from 'pino-http';
import type { Logger } from '../core/ops/log.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Probes: a 503 from them is an answer ("not ready yet", e.g. while the model loads at start), not a
 * failure of the request, so it is logged at info level.
 */
const PROBES = new Set(['/readyz', '/healthz']);

export function accessLog(log: Logger) {
  return pinoHttp({
    logger: log.pino,
    genReqId: (req: IncomingMessage, res: ServerResponse) => {
      const given = req.headers['x-request-id'];
      const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
      res.setHeader('X-Request-Id', id);
      return id;
    },
    customProps: (req) => ({ requestId: req.id }),
    // Method, path and status are what an access log needs; headers and bodies stay out of the logs.
    serializers: {
      // originalUrl: a router mounted at /v1/… sees only the rest of the path in `url`.
      req: (req: { method: string; url: string; raw?: { originalUrl?: string } }) => ({
        method: req.method,
        url: req.raw?.originalUrl ?? req.url,
      }),
      res: (res: { statusCode: number }) => ({ status: res.statusCode }),
    },
    customLogLevel: (req, res, err) =>
      err || (res.statusCode >= 500 && !PROBES.has(pathOf(req))) ? 'error' : 'info',
    // A 5xx without a thrown error gets pino-http's stand-in Error, whose stack is pino-http's own
    // frames: the status says everything, so the line carries no `err`.
    customErrorObject: (_req, res, error, fields: Record<string, unknown>) =>
      error.message === `failed with status code ${res.statusCode}` ? { ...fields, err: undefined } : fields,
    customSuccessMessage: (req, res) => `${req.method} ${pathOf(req)} ${res.statusCode}`,
    customErrorMessage: (req, res) => `${req.method} ${pathOf(req)} ${res.statusCode}`,
  });
}

function pathOf(req: IncomingMessage): string {
  return (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? '';
}

/** The request's id (set by accessLog). */
export function requestIdOf(req: Request): string {
  return String((req as unknown as { id?: unknown }).id ?? '');
}
