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
 * set, and run until SIGINT/SIGTERM/SIGHUP, then close it. `start` may register with `onAbandon` what must
 * be undone even when a signal stops the service before its start has finished (a Redis it started).
 */
export async function runService(
  name: string,
  start: (config: Config, log: Logger, onAbandon: (undo: () => Promise<void>) => void) => Promise<Service>,
  opts: { metricsServer?: boolean } = {},
): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel, name);
  // Signals are handled from the start: a Ctrl-C while the service is still starting stops it once started.
  const undo: (() => Promise<void>)[] = [];
  const started = (async () => {
    const service = await start(config, log, (fn) => undo.push(fn));
    const port = opts.metricsServer ? config.metricsPort : null;
    const server = port === null ? null : await startMetricsServer(port, config.host, log);
    return { service, server };
  })();
  const stopped = untilSignal(log, async () => {
    // Still starting: wait for it a while (a start that waits on a Redis that went away never ends).
    let timer: NodeJS.Timeout | undefined;
    const giveUp = new Promise<null>(
      (resolve) => (timer = setTimeout(() => resolve(null), STARTING_WAIT_MS)),
    );
    const up = await Promise.race([started, giveUp]).finally(() => clearTimeout(timer));
    if (up === null) {
      log.warn('stopped while still starting');
      for (const fn of undo) await fn().catch(() => undefined);
      return;
    }
    up.server?.close();
    await up.service.close();
  });
  await Promise.race([started.then(() => stopped), stopped]);
}

/** How long a signal that arrives while the service is starting waits for the start to finish. */
const STARTING_WAIT_MS = 3_000;

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

/**
 * A signal repeated within this long counts as the same request to stop: `npm start` passes a terminal's
 * Ctrl-C on to the service, which then gets it twice (from the terminal's process group and from npm).
 */
const REPEATED_SIGNAL_MS = 1_000;

/**
 * Resolves when the process is asked to stop (SIGINT, SIGTERM, or SIGHUP: the terminal closed); runs `stop`
 * once. A second signal, later than REPEATED_SIGNAL_MS after the first, exits at once.
 */
export function untilSignal(log: Logger, stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stoppingSince: number | null = null;
    const handler = (signal: NodeJS.Signals) => {
      if (stoppingSince !== null) {
        if (Date.now() - stoppingSince < REPEATED_SIGNAL_MS) return; // the same Ctrl-C, passed on by npm
        log.warn('second signal: exiting now', { signal });
        process.exit(1);
      }
      stoppingSince = Date.now();
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
          for (const s of SIGNALS) process.off(s, handler);
          resolve();
        });
    };
    for (const s of SIGNALS) process.on(s, handler);
  });
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

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
