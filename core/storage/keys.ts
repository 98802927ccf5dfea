import { InvalidArgumentError } from '../errors.js';

/** First key segment reserved for the file store's staging directory. */
export const RESERVED_SEGMENT = '.tmp';

const MAX_KEY_BYTES = 1024;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Throws InvalidArgumentError unless `key` is a valid object key (see ObjectStore). */
export function validateKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidArgumentError('object key must be a non-empty string');
  }
  checkCommon(key, 'object key');
  if (key.endsWith('/')) throw new InvalidArgumentError(`object key must not end with '/': ${show(key)}`);
  const segments = key.split('/');
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw new InvalidArgumentError(`object key has an empty, '.' or '..' segment: ${show(key)}`);
    }
  }
  if (segments[0] === RESERVED_SEGMENT) {
    throw new InvalidArgumentError(`object keys under '${RESERVED_SEGMENT}/' are reserved: ${show(key)}`);
  }
  return key;
}

/**
 * Throws InvalidArgumentError unless `prefix` is a valid list prefix: '' or the beginning of some valid
 * key (a trailing '/' or a partial last segment is fine).
 */
export function validatePrefix(prefix: string): string {
  if (typeof prefix !== 'string') throw new InvalidArgumentError('list prefix must be a string');
  if (prefix === '') return prefix;
  checkCommon(prefix, 'list prefix');
  const segments = prefix.split('/');
  // Every complete segment (all but the last) must be a legal key segment.
  for (const segment of segments.slice(0, -1)) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw new InvalidArgumentError(`list prefix has an empty, '.' or '..' segment: ${show(prefix)}`);
    }
  }
  return prefix;
}

/** Throws InvalidArgumentError unless 0 <= start <= endExclusive are safe integers. */
export function validateRange(start: number, endExclusive: number): void {
  if (
    !Number.isSafeInteger(start) ||
    !Number.isSafeInteger(endExclusive) ||
    start < 0 ||
    endExclusive < start
  ) {
    throw new InvalidArgumentError(
      `invalid byte range [${String(start)}, ${String(endExclusive)}): need integers 0 <= start <= end`,
    );
  }
}

/** Bytes [start, end) of `data`, clamped to its length, as a copy. */
export function sliceClamped(data: Buffer, start: number, endExclusive: number): Buffer {
  const s = Math.min(start, data.length);
  const e = Math.min(endExclusive, data.length);
  return Buffer.from(data.subarray(s, e));
}

function checkCommon(value: string, what: string): void {
  if (value.startsWith('/'))
    throw new InvalidArgumentError(`${what} must not start with '/': ${show(value)}`);
  if (value.includes('\\')) throw new InvalidArgumentError(`${what} must not contain '\\': ${show(value)}`);
  if (CONTROL.test(value)) throw new InvalidArgumentError(`${what} must not contain control characters`);
  if (Buffer.byteLength(value, 'utf8') > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(`${what} is longer than ${MAX_KEY_BYTES} bytes`);
  }
}

function show(value: string): string {
  return JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value);
}
