import type { StoreDeadlines } from './deadline.js';

/**
 * Object storage behind the KV cache: one small interface with memory, file and S3 implementations.
 *
 * Keys are '/'-separated relative paths (see `validateKey` in keys.ts): no leading '/', no empty, '.' or
 * '..' segments, no backslashes or control characters, at most 1024 UTF-8 bytes, and the first segment
 * may not be `.tmp` (the file store stages writes there). Every store rejects a bad key with
 * InvalidArgumentError, so a key that works against `memory://` works everywhere.
 */
export interface ObjectStore {
  /** The whole object, or null when it does not exist. */
  get(key: string): Promise<Buffer | null>;
  /**
   * Bytes [start, endExclusive) of the object, or null when it does not exist. The range is clamped to
   * the object: a range reaching past the end returns the shorter tail, and one starting at or past the
   * end returns an empty buffer. `start` and `endExclusive` must be integers with 0 <= start <= end.
   */
  getRange(key: string, start: number, endExclusive: number): Promise<Buffer | null>;
  /** Size in bytes, or null when the object does not exist. */
  head(key: string): Promise<{ size: number } | null>;
  /**
   * Stores `data` under `key`, replacing any previous object. Atomic: readers see the old object (or
   * none) until the new one is complete, never a partial one.
   */
  put(key: string, data: Buffer): Promise<void>;
  /** Removes the object; deleting a missing object is not an error. */
  delete(key: string): Promise<void>;
  /**
   * Keys that start with `prefix` (a plain string prefix, as in S3, not necessarily a whole segment); `''`
   * lists everything. Order is unspecified: memory and file stores yield ascending UTF-8 byte order, as
   * AWS S3 and MinIO do, but s3rver does not. Keys are streamed page by page from S3.
   */
  list(prefix: string): AsyncIterable<string>;
  /** Resolves when the store is usable; throws UnavailableError when it cannot be reached. */
  ping(): Promise<void>;
  /** A human-readable location, safe to log (never contains credentials). */
  describe(): string;
  /** Releases sockets and other resources; the store must not be used afterwards. */
  close(): Promise<void>;
}

/** Connection settings for `s3://` stores; the S3 part of Config has this shape. */
export interface S3StoreOptions {
  /** e.g. `http://127.0.0.1:9000` for MinIO/s3rver; omit for AWS. */
  endpoint?: string;
  /** Defaults to us-east-1. */
  region?: string;
  /** Static credentials; when omitted the AWS SDK's default provider chain is used. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Path-style addressing (`endpoint/bucket/key`); default true, which MinIO and s3rver need. */
  forcePathStyle?: boolean;
  /** Attempts per request including the first; default 3. */
  maxAttempts?: number;
  /** TCP connect timeout; default 5000 ms. */
  connectTimeoutMs?: number;
  /** Whole request + response timeout; default 120000 ms. */
  requestTimeoutMs?: number;
}

export interface ObjectStoreOptions {
  s3?: S3StoreOptions;
  /** Deadlines of file and S3 operations (default DEFAULT_STORE_DEADLINES in deadline.ts). */
  deadlines?: StoreDeadlines;
  /** Base directory for relative `file://./dir` URLs; default process.cwd(). */
  cwd?: string;
}
