/**
 * Flag parsing shared by the CLI's commands: node:util parseArgs (strict), with negative numbers allowed
 * as values (`--seed -3` would otherwise be read as a flag and reported as "ambiguous"), and numbers
 * checked with plain messages.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InvalidArgumentError } from '../core/errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs over `argv`, after joining `--flag -3` into `--flag=-3` for string flags. */
export function parseFlags<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].startsWith('--') ? argv[i].slice(2) : null;
    const next = argv[i + 1];
    if (name && options[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${argv[i]}=${next}`);
      i++;
    } else joined.push(argv[i]);
  }
  try {
    return parseArgs({ args: joined, options, strict: true, allowPositionals });
  } catch (err) {
    // parseArgs's own messages are clear; they become usage errors (exit 2).
    throw new InvalidArgumentError((err as Error).message);
  }
}

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

/** A flag whose value must be one of `allowed`. */
export function choiceFlag<T extends string>(
  raw: string | undefined,
  name: string,
  allowed: readonly T[],
  fallback: T,
): T {
  const v = raw ?? fallback;
  if (!allowed.includes(v as T))
    throw new InvalidArgumentError(`--${name} must be one of ${allowed.join(', ')}, got "${v}"`);
  return v as T;
}
