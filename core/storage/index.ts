import path from 'node:path';
import { ConfigError } from '../errors.js';
import { DEFAULT_STORE_DEADLINES, DeadlineObjectStore } from './deadline.js';
import { FileObjectStore } from './file.js';
import { MemoryObjectStore } from './memory.js';
import { S3ObjectStore } from './s3.js';
import type { ObjectStore, ObjectStoreOptions } from './types.js';

export type { ObjectStore, ObjectStoreOptions, S3StoreOptions } from './types.js';
export { FileObjectStore } from './file.js';
export { MemoryObjectStore } from './memory.js';
export { S3ObjectStore } from './s3.js';
export { parseS3Url } from './s3-config.js';
export { validateKey, validatePrefix } from './keys.js';
export { DEFAULT_STORE_DEADLINES, DeadlineObjectStore, type StoreDeadlines } from './deadline.js';

/**
 * Opens a store by URL scheme:
 * - `memory://` (private) or `memory://<name>` (shared per name within the process);
 * - `file:///abs/dir` or `file://./rel/dir` / `file://rel/dir` (relative to `options.cwd`, default
 *   process.cwd()); the path is taken literally (no percent-decoding);
 * - `s3://bucket[/prefix]` with connection settings from `options.s3`.
 * Anything else is a ConfigError. Opening does no I/O; call `ping()` to check reachability. File and S3
 * stores bound every operation by `options.deadlines` (default DEFAULT_STORE_DEADLINES, see deadline.ts).
 */
export function openObjectStore(url: string, options: ObjectStoreOptions = {}): ObjectStore {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  switch (scheme) {
    case 'memory':
      return new MemoryObjectStore(url.slice('memory://'.length));
    case 'file':
      return new DeadlineObjectStore(
        new FileObjectStore(fileUrlToDir(url, options.cwd ?? process.cwd())),
        options.deadlines ?? DEFAULT_STORE_DEADLINES,
      );
    case 's3':
      return new S3ObjectStore(url, options.s3, options.deadlines ?? DEFAULT_STORE_DEADLINES);
    default:
      throw new ConfigError(
        `unsupported object store URL ${JSON.stringify(url)}: use memory://, file:///abs/dir, file://./rel/dir or s3://bucket/prefix`,
      );
  }
}

/** The directory of a `file://` store URL, resolved against `cwd` when relative. */
export function fileUrlToDir(url: string, cwd: string = process.cwd()): string {
  const rest = url.slice('file://'.length);
  if (rest === '') throw new ConfigError(`file store URL has no directory: ${url}`);
  return path.isAbsolute(rest) ? path.resolve(rest) : path.resolve(cwd, rest);
}
