import { UnavailableError } from '../errors.js';

/**
 * `p`, or a rejection once `ms` pass: with `onTimeout()`'s error, or an UnavailableError saying what timed
 * out when given a string. The timer never outlives the race.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: string | (() => Error)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          typeof onTimeout === 'string'
            ? new UnavailableError(`${onTimeout} timed out after ${ms} ms`)
            : onTimeout(),
        ),
      ms,
    );
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Milliseconds rounded to two decimals (10 µs), as replies and CLI output show them. */
export function roundMs(ms: number): number {
  return Math.round(ms * 100) / 100;
}
