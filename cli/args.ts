/** Numeric flag values, checked with plain messages that name the flag (commander hands them over as text). */
import { InvalidArgumentError } from '../core/errors.js';

/** A numeric flag: undefined when absent; a message naming the flag and the allowed range otherwise. */
export function numberFlag(
  raw: string | undefined,
  name: string,
  rule: { integer?: boolean; min?: number; max?: number } = {},
): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  const { integer = false, min = -Infinity, max = Infinity } = rule;
  if (raw.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    const kind = integer ? 'an integer' : 'a number';
    const range =
      min > -Infinity && max < Infinity
        ? ` from ${min} to ${max}`
        : min > -Infinity
          ? ` of at least ${min}`
          : max < Infinity
            ? ` of at most ${max}`
            : '';
    throw new InvalidArgumentError(`--${name} must be ${kind}${range}, got "${raw}"`);
  }
  return n;
}
