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
      req: (req: { method: string; url: string }) => ({ method: req.method, url: req.url }),
      res: (res: { statusCode: number }) => ({ status: res.statusCode }),
    },
    customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : 'info'),
    customSuccessMessage: (req, res) => `${req.method} ${req.url} ${res.statusCode}`,
    customErrorMessage: (req, res) => `${req.method} ${req.url} ${res.statusCode}`,
  });
}

/** The request's id (set by accessLog). */
export function requestIdOf(req: Request): string {
  return String((req as unknown as { id?: unknown }).id ?? '');
}
