/** Fixtures of the object store tests: an s3rver per test file, temporary directories, listings and hashes. */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { S3StoreOptions } from '../../core/storage/types.js';
import { s3Options } from './service.js';
import { startS3, type S3Handle } from './services.js';

export const MiB = 1024 * 1024;
export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** All keys of a listing, sorted (list order is unspecified; s3rver's differs from S3's byte order). */
export async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const key of iterable) out.push(key);
  return out.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/** A maker of temporary directories for this test file; they are removed after its tests. */
export function useTempDirs(): () => Promise<string> {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });
  return async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-store-'));
    dirs.push(dir);
    return dir;
  };
}

export interface S3Fixture {
  readonly bucket: string;
  readonly endpoint: string;
  /** Store options that reach this s3rver. */
  options(): S3StoreOptions;
}

/** An s3rver for this test file: started before its tests, stopped after them. */
export function useS3(): S3Fixture {
  let s3: S3Handle | undefined;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => {
    await s3?.stop();
  });
  const started = (): S3Handle => {
    if (!s3) throw new Error('s3rver is not started yet (use it inside a test or hook)');
    return s3;
  };
  return {
    get bucket() {
      return started().bucket;
    },
    get endpoint() {
      return started().endpoint;
    },
    options: () => s3Options(started()),
  };
}
