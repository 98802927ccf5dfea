/**
 * The project's error hierarchy. Every error that crosses a module boundary is a CacheBlendError with a
 * stable `code` and, for bad input, the `field` at fault, so the API can map it to an HTTP status and
 * callers can branch without parsing messages. Across a thread or a queue an error travels as its data
 * (`ErrorData`, JSON on the queue) and is rebuilt on the other side with the same properties.
 */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'UNSUPPORTED_MODEL',
  'MODEL_LOAD_FAILED',
  'KV_FORMAT',
  'KV_MISMATCH',
  'CACHE_MISS',
  'STORAGE',
  'UNAVAILABLE',
  'CONFIG',
  'TIMEOUT',
  'PAYLOAD_TOO_LARGE',
  'UNAUTHENTICATED',
  'RATE_LIMITED',
  'CANCELLED',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** What every error carries: its code, its message, and the request field (or option) at fault. */
export interface ErrorData {
  code: ErrorCode;
  message: string;
  field?: string;
}

export interface ErrorOptions {
  cause?: unknown;
  /** The request field or option at fault (a dotted path such as `chunks.3`). */
  field?: string;
}

export class CacheBlendError extends Error {
  readonly code: ErrorCode;
  readonly field?: string;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options && 'cause' in options ? { cause: options.cause } : undefined);
    this.code = code;
    if (options?.field !== undefined) this.field = options.field;
    this.name = new.target.name;
  }

  /** The error as plain data (what crosses a thread or a queue). */
  toData(): ErrorData {
    return { code: this.code, message: this.message, ...(this.field !== undefined && { field: this.field }) };
  }
}

/** Bad input from a caller (CLI flag, request field). */
export class InvalidArgumentError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('INVALID_ARGUMENT', message, options);
  }
}

/** Input that would cost more than the service allows (tokens over a budget or the context): a 413. */
export class TooLargeError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('PAYLOAD_TOO_LARGE', message, options);
  }
}

/** Work stopped because its requester went away or gave up. */
export class CancelledError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('CANCELLED', message, options);
  }
}

export class NotFoundError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('NOT_FOUND', message, options);
  }
}

/** A model architecture or option this engine does not implement; never run such a model silently. */
export class UnsupportedModelError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('UNSUPPORTED_MODEL', message, options);
  }
}

export class ModelLoadError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('MODEL_LOAD_FAILED', message, options);
  }
}

/** A stored KV object is malformed: bad magic, version, truncation or checksum. Treat as a miss. */
export class KvFormatError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('KV_FORMAT', message, options);
  }
}

/** A well-formed KV object that belongs to another model, chunk or shape. Treat as a miss. */
export class KvMismatchError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('KV_MISMATCH', message, options);
  }
}

export class StorageError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('STORAGE', message, options);
  }
}

/** A dependency (Redis, object store) cannot be reached right now. */
export class UnavailableError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('UNAVAILABLE', message, options);
  }
}

export class ConfigError extends CacheBlendError {
  constructor(message: string, options?: ErrorOptions) {
    super('CONFIG', message, options);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A bad request field: the message names the field first (`field: detail`), and `field` holds it. */
export function invalidField(field: string, detail: string): InvalidArgumentError {
  return new InvalidArgumentError(`${field}: ${detail}`, { field });
}

/**
 * A bad option value: the message starts with the option's name (`ratio must be in [0, 1]`), and `field`
 * holds it, so a caller that names options otherwise (the CLI's flags) can say it in its own words.
 */
export function invalidOption(field: string, predicate: string): InvalidArgumentError {
  return new InvalidArgumentError(`${field} ${predicate}`, { field });
}

/** A request field over a limit (413), as invalidField. */
export function tooLargeField(field: string, detail: string): TooLargeError {
  return new TooLargeError(`${field}: ${detail}`, { field });
}

const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODES);

/** Any thrown value as ErrorData: a CacheBlendError's own properties, anything else INTERNAL. */
export function errorData(err: unknown): ErrorData {
  if (err instanceof CacheBlendError) return err.toData();
  return { code: 'INTERNAL', message: errorMessage(err) };
}

type ErrorClass = new (message: string, options?: ErrorOptions) => CacheBlendError;
const CLASS_OF_CODE: Partial<Record<ErrorCode, ErrorClass>> = {
  INVALID_ARGUMENT: InvalidArgumentError,
  PAYLOAD_TOO_LARGE: TooLargeError,
  CANCELLED: CancelledError,
  NOT_FOUND: NotFoundError,
  UNSUPPORTED_MODEL: UnsupportedModelError,
  MODEL_LOAD_FAILED: ModelLoadError,
  KV_FORMAT: KvFormatError,
  KV_MISMATCH: KvMismatchError,
  STORAGE: StorageError,
  UNAVAILABLE: UnavailableError,
  CONFIG: ConfigError,
};

/** The error that `data` describes: the class of its code, with the same code, message and field. */
export function errorFromData(data: ErrorData): CacheBlendError {
  const options = data.field === undefined ? {} : { field: data.field };
  const Class = CLASS_OF_CODE[data.code];
  return Class ? new Class(data.message, options) : new CacheBlendError(data.code, data.message, options);
}

/** ErrorData as JSON text (for a queue, whose failures are strings). */
export function encodeErrorData(data: ErrorData): string {
  return JSON.stringify(data);
}

/**
 * ErrorData from its JSON text; text that is not such JSON (a failure recorded by something else, such
 * as BullMQ's own stall errors) is an INTERNAL error with that text as its message.
 */
export function decodeErrorData(text: string | undefined, ifEmpty = 'failed'): ErrorData {
  const fallback: ErrorData = { code: 'INTERNAL', message: text || ifEmpty };
  if (!text?.startsWith('{')) return fallback;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return fallback;
  }
  const d = v as Partial<Record<keyof ErrorData, unknown>>;
  if (typeof d !== 'object' || d === null) return fallback;
  if (typeof d.code !== 'string' || !KNOWN_CODES.has(d.code) || typeof d.message !== 'string')
    return fallback;
  return {
    code: d.code as ErrorCode,
    message: d.message,
    ...(typeof d.field === 'string' && { field: d.field }),
  };
}
