/** Fixtures of the object store tests: an s3rver (or a radosgw bucket) per test file, temporary directories, listings and hashes. */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { S3StoreOptions } from '../../core/storage/types.js';
import { RGW_SKIPPED, startRgw } from './rgw.js';
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
  /** Store options that reach this server. */
  options(): S3StoreOptions;
}

/**
 * An S3 server for this test file: an s3rver started before its tests and stopped after them, or a
 * bucket of its own on the run's radosgw (none when RGW_SKIPPED).
 */
export function useS3(server: S3Handle['server'] = 's3rver'): S3Fixture {
  let s3: S3Handle | undefined;
  beforeAll(async () => {
    if (server === 's3rver') s3 = await startS3();
    else if (!RGW_SKIPPED) s3 = await startRgw();
  });
  afterAll(async () => {
    await s3?.stop();
  });
  const started = (): S3Handle => {
    if (!s3) throw new Error(`${server} is not started yet (use it inside a test or hook)`);
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
