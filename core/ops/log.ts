/**
 * Structured logging through pino: one JSON object per line on stderr, filtered by level. The project's
 * Logger keeps the `log.info(message, fields)` call shape everywhere; `child` adds a component name or
 * bindings such as a request id. Safe on worker threads (stderr is forwarded to the parent).
 */
import { pino, type Logger as PinoLogger } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';

export interface Logger {
  trace(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger whose lines also carry `name` (a component: `api`, `blend`, …) or the given bindings. */
  child(bindings: string | Record<string, unknown>): Logger;
  /** The pino logger underneath (for pino-http). */
  readonly pino: PinoLogger;
}

function wrap(p: PinoLogger, named: (name: string) => PinoLogger): Logger {
  return {
    trace: (m, f) => p.trace(f ?? {}, m),
    debug: (m, f) => p.debug(f ?? {}, m),
    info: (m, f) => p.info(f ?? {}, m),
    warn: (m, f) => p.warn(f ?? {}, m),
    error: (m, f) => p.error(f ?? {}, m),
    // A component gets a logger of its own name (pino would repeat a `name` binding, not replace it).
    child: (b) =>
      typeof b === 'string'
        ? wrap(named(`${String(p.bindings().name ?? 'cacheblend')}.${b}`), named)
        : wrap(p.child(b), named),
    pino: p,
  };
}

/**
 * A logger writing to `destination`: default process.stderr (on a worker thread, forwarded to the
 * process's stderr by Node).
 */
export function createLogger(
  level: LogLevel = 'info',
  name = 'cacheblend',
  destination: { write(line: string): unknown } = process.stderr,
): Logger {
  const named = (n: string) =>
    pino(
      { level, name: n, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
      destination as pino.DestinationStream,
    );
  return wrap(named(name), named);
}

export const silentLogger: Logger = createLogger('silent');
