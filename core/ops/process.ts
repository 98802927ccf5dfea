/**
 * Process plumbing shared by the entry points: run a service until SIGINT/SIGTERM and close it once,
 * serve /metrics and /healthz for a worker started alone, and run a module's main when it is the entry.
 */
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { loadConfig, type Config } from '../config/index.js';
import { errorMessage } from '../errors.js';
import { createLogger, type Logger } from './log.js';
import { metrics } from './metrics.js';

/** Something started that must be closed on shutdown. */
export interface Service {
  close(): Promise<void>;
}

/**
 * Start a service from the environment's configuration, serve its metrics on METRICS_PORT when asked and
 * set, and run until SIGINT/SIGTERM, then close it.
 */
export async function runService(
  name: string,
  start: (config: Config, log: Logger) => Promise<Service>,
  opts: { metricsServer?: boolean } = {},
): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel, name);
  const service = await start(config, log);
  const port = opts.metricsServer ? config.metricsPort : null;
  const server = port === null ? null : await startMetricsServer(port, config.host, log);
  await untilSignal(log, async () => {
    server?.close();
    await service.close();
  });
}

/** Run `main` when `moduleUrl` is the process's entry point: exit with its code, or 1 printing the error. */
export function runIfEntryPoint(moduleUrl: string, name: string, main: () => Promise<number | void>): void {
  if (!isEntryPoint(moduleUrl)) return;
  main().then(
    (code) => process.exit(code ?? 0),
    (err: unknown) => {
      process.stderr.write(`${name}: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}

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
