/**
 * Process plumbing shared by the entry points: run shutdown steps once on SIGINT/SIGTERM, serve
 * /metrics and /healthz for a worker started alone, and tell whether a module is the entry point.
 */
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import type { Logger } from './log.js';
import { metrics } from './metrics.js';

export function isEntryPoint(moduleUrl: string): boolean {
  return process.argv[1] !== undefined && moduleUrl === pathToFileURL(process.argv[1]).href;
}

/** Resolves when the process is asked to stop; runs `stop` once (a second signal exits at once). */
export function untilSignal(log: Logger, stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const handler = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn('second signal: exiting now', { signal });
        process.exit(1);
      }
      stopping = true;
      log.info('shutting down', { signal });
      const force = setTimeout(() => {
        log.error('shutdown took too long: exiting');
        process.exit(1);
      }, 30_000);
      force.unref();
      stop()
        .catch((err: unknown) => log.error('error during shutdown', { error: String(err) }))
        .finally(() => {
          clearTimeout(force);
          resolve();
        });
    };
    process.once('SIGINT', handler);
    process.once('SIGTERM', handler);
  });
}

/** METRICS_PORT for workers started alone (unset: no metrics server). */
export function metricsPortFromEnv(): number | null {
  const raw = process.env.METRICS_PORT?.trim();
  if (!raw) return null;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`METRICS_PORT must be a port number, got "${raw}"`);
  return port;
}

/** A minimal HTTP server with GET /metrics and GET /healthz. */
export async function startMetricsServer(port: number, host: string, log: Logger): Promise<http.Server> {
  const m = metrics();
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      m.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'Content-Type': m.registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500).end();
        },
      );
    } else if (req.method === 'GET' && req.url === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
    } else {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end('{"error":{"code":"NOT_FOUND","message":"only /metrics and /healthz here"}}');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  log.info('metrics server listening', { port: (server.address() as { port: number }).port });
  return server;
}
