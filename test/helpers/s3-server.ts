/**
 * The S3-compatible server of the tests: s3rver (infra/s3-server.mjs) in a child process, as users get
 * MinIO through docker-compose.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { trackChild } from './child-processes.js';

export interface S3Handle {
  /** e.g. http://127.0.0.1:41235 */
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: 'us-east-1';
  /** Which server: the s3rver test double, or radosgw (Ceph's S3 gateway: test/helpers/rgw.ts). */
  server: 's3rver' | 'radosgw';
  /** Writes and deletes answer 403 AccessDenied while on (reads work): a read-only store. */
  setReadOnly(on: boolean): void;
  stop(): Promise<void>;
}

const S3_SERVER_SCRIPT = fileURLToPath(new URL('../../infra/s3-server.mjs', import.meta.url));

/**
 * Starts s3rver (via infra/s3-server.mjs, in a child process) on a free loopback port, storing objects in
 * a fresh temporary directory, with one bucket created. Use path-style addressing and the returned
 * S3RVER/S3RVER credentials.
 */
export async function startS3(options: { bucket?: string; timeoutMs?: number } = {}): Promise<S3Handle> {
  const bucket = options.bucket ?? 'cacheblend-test';
  const directory = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-s3-'));
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // don't inherit the test runner's loaders
  const args = [
    '--openssl-legacy-provider',
    S3_SERVER_SCRIPT,
    '--port',
    '0',
    '--address',
    '127.0.0.1',
    '--directory',
    directory,
    '--bucket',
    bucket,
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const exited = trackChild(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));

  const ready = new Promise<string>((resolve, reject) => {
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const newline = stdout.indexOf('\n');
      if (newline < 0) return;
      try {
        resolve((JSON.parse(stdout.slice(0, newline)) as { endpoint: string }).endpoint);
      } catch (err) {
        reject(new Error(`unexpected output from s3-server: ${stdout.slice(0, newline)}`, { cause: err }));
      }
    });
  });
  const timeoutMs = options.timeoutMs ?? 15_000;
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    ready.then((endpoint) => ({ endpoint })),
    exited.then((exit) => ({ exit })),
    new Promise<{ timeout: true }>(
      (resolve) => (timer = setTimeout(() => resolve({ timeout: true }), timeoutMs)),
    ),
  ]).catch((error: Error) => ({ error }));
  clearTimeout(timer);

  let stopping = false;
  const stop = async () => {
    stopping = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(kill);
    }
    await rm(directory, { recursive: true, force: true });
  };
  if (!('endpoint' in outcome)) {
    await stop();
    const why =
      'exit' in outcome
        ? `exited (code ${String(outcome.exit.code)}${outcome.exit.error ? `, ${outcome.exit.error.message}` : ''})`
        : 'timeout' in outcome
          ? `did not start within ${timeoutMs} ms`
          : outcome.error.message;
    throw new Error(`s3-server ${why}${stderr.trim() ? `: ${stderr.trim()}` : ''}`);
  }
  // A server that dies under a test shows up as timeouts and 503s far from the cause: say so where it happens.
  void exited.then((exit) => {
    if (stopping) return;
    const why = `code ${String(exit.code)}, signal ${String(child.signalCode)}`;
    process.stderr.write(
      `s3-server (${outcome.endpoint}) exited during the tests (${why}): ${stderr.trim()}\n`,
    );
  });
  let readOnly = false;
  return {
    endpoint: outcome.endpoint,
    setReadOnly(on: boolean) {
      if (on !== readOnly) child.kill('SIGUSR2');
      readOnly = on;
    },
    bucket,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    region: 'us-east-1',
    server: 's3rver',
    stop,
  };
}
