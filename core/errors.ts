/**
 * The project's error hierarchy. Every error that crosses a module boundary is a CacheBlendError with a
 * stable `code`, so the API can map it to an HTTP status and callers can branch without parsing messages.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'UNSUPPORTED_MODEL'
  | 'MODEL_LOAD_FAILED'
  | 'KV_FORMAT'
  | 'KV_MISMATCH'
  | 'CACHE_MISS'
  | 'STORAGE'
  | 'UNAVAILABLE'
  | 'CONFIG'
  | 'TIMEOUT'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNAUTHENTICATED'
  | 'RATE_LIMITED'
  | 'CANCELLED'
  | 'INTERNAL';

export class CacheBlendError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad input from a caller (CLI flag, request field). */
export class InvalidArgumentError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_ARGUMENT', message, options);
  }
}

/** Input that would cost more than the service allows (tokens over a budget or the context): a 413. */
export class TooLargeError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PAYLOAD_TOO_LARGE', message, options);
  }
}

/** Work stopped because its requester went away or gave up. */
export class CancelledError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CANCELLED', message, options);
  }
}

export class NotFoundError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NOT_FOUND', message, options);
  }
}

/** A model architecture or option this engine does not implement; never run such a model silently. */
export class UnsupportedModelError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('UNSUPPORTED_MODEL', message, options);
  }
}

export class ModelLoadError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MODEL_LOAD_FAILED', message, options);
  }
}

/** A stored KV object is malformed: bad magic, version, truncation or checksum. Treat as a miss. */
export class KvFormatError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KV_FORMAT', message, options);
  }
}

/** A well-formed KV object that belongs to another model, chunk or shape. Treat as a miss. */
export class KvMismatchError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KV_MISMATCH', message, options);
  }
}

export class StorageError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORAGE', message, options);
  }
}

/** A dependency (Redis, object store) cannot be reached right now. */
export class UnavailableError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('UNAVAILABLE', message, options);
  }
}

export class ConfigError extends CacheBlendError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG', message, options);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
