import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openObjectStore } from '../core/storage/index.js';
import type { ObjectStore } from '../core/storage/types.js';

/** The repository's S3 server script (relative to dist/bench/ when compiled). */
const SCRIPT = fileURLToPath(new URL('../../infra/s3-server.mjs', import.meta.url));

export interface LoopbackS3 {
  endpoint: string;
  /** A store under `prefix` in the server's bucket, as the service opens `s3://bucket/prefix` URLs. */
  store(prefix: string): ObjectStore;
  stop(): Promise<void>;
}

/**
 * The tests' S3 server (s3rver, infra/s3-server.mjs) in a child process on a free loopback port, with a
 * fresh directory and one bucket: an object store reached over HTTP, for the benchmarks' S3 tier.
 */
const BENCH_DEADLINES = { readMs: 60_000, writeMs: 60_000, bytesPerMs: 8 * 1024 };

export async function startLoopbackS3(): Promise<LoopbackS3> {
  const dir = mkdtempSync(join(tmpdir(), 'cacheblend-bench-s3-'));
  const bucket = 'cacheblend-bench';
  const args = ['--openssl-legacy-provider', SCRIPT, '--port', '0', '--address', '127.0.0.1'];
  const child = spawn(process.execPath, [...args, '--directory', dir, '--bucket', bucket], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.once('exit', (code) => reject(new Error(`s3-server exited (code ${String(code)})`)));
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve((JSON.parse(out.slice(0, nl)) as { endpoint: string }).endpoint);
    });
  });
  const s3 = {
    endpoint,
    region: 'us-east-1',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    forcePathStyle: true,
  };
  const stores: ObjectStore[] = [];
  return {
    endpoint,
    store(prefix: string) {
      // Inference runs on the benchmark's own thread, and a long run delays the store's deadline timers
      // past replies that came in time: wide deadlines, so a slow run never turns into a cache miss.
      const store = openObjectStore(`s3://${bucket}/${prefix}`, { s3, deadlines: BENCH_DEADLINES });
      stores.push(store);
      return store;
    },
    async stop() {
      for (const store of stores) await store.close();
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
