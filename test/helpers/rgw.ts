/**
 * The radosgw of the test run (test/setup/rgw.ts): a real S3 server, shared by the test files, each of
 * which gets buckets of its own. `RGW_SKIPPED` is the reason the radosgw tests are skipped, or '' when
 * they run; a radosgw that was to run but failed to start fails its tests.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { s3ClientConfig } from '../../core/storage/s3-config.js';
import type { S3Handle } from './s3-server.js';
import { uniqueName } from './service.js';

export const RGW_SKIPPED: string = inject('rgwSkipped');

/** The label of a test (suite) that runs on radosgw, saying loudly when it is skipped. */
export const rgwLabel = (name: string) => (RGW_SKIPPED ? `${name} (SKIPPED: ${RGW_SKIPPED})` : name);

interface RgwCredentials {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

let credentials: Promise<RgwCredentials> | undefined;

/** Within the hooks' 120 s: the start (test/setup/rgw.ts) began with the run, in the background. */
async function waitForRgw(dir: string, timeoutMs = 110_000): Promise<RgwCredentials> {
  const env = path.join(dir, 'credentials.env');
  const rc = path.join(dir, 'start.rc');
  const t0 = Date.now();
  // A radosgw started by test/setup/rgw.ts leaves start.rc when its start ends; one given by
  // CACHEBLEND_TEST_RGW has credentials.env from the start.
  while (!existsSync(rc) && !(existsSync(env) && existsSync(path.join(dir, 'endpoint')))) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`radosgw in ${dir} did not start in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (existsSync(rc)) {
    const [code, ...why] = readFileSync(rc, 'utf8').split('\n');
    if (code !== '0') throw new Error(`infra/start-rgw.sh ${dir} failed (${code}): ${why.join('\n')}`);
  }
  const vars = Object.fromEntries(
    readFileSync(env, 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  return {
    endpoint: readFileSync(path.join(dir, 'endpoint'), 'utf8').trim(),
    accessKeyId: vars.AWS_ACCESS_KEY_ID,
    secretAccessKey: vars.AWS_SECRET_ACCESS_KEY,
  };
}

/**
 * A new bucket on the run's radosgw, as an S3Handle (stop() leaves it: the radosgw's objects live in
 * memory and go with it). Throws when radosgw is skipped: guard the test with RGW_SKIPPED.
 */
export async function startRgw(label = 'rgw'): Promise<S3Handle> {
  const dir = inject('rgwDir');
  if (!dir) throw new Error(`radosgw is not available: ${RGW_SKIPPED}`);
  credentials ??= waitForRgw(dir);
  const c = await credentials;
  const bucket = uniqueName(label)
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 63);
  const client = new S3Client(s3ClientConfig({ ...c, region: 'us-east-1' }));
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return {
    ...c,
    bucket,
    region: 'us-east-1',
    server: 'radosgw',
    setReadOnly() {
      throw new Error('setReadOnly is an s3rver test hook; radosgw has none');
    },
    stop: async () => undefined,
  };
}
