#!/usr/bin/env node
/**
 * A local S3-compatible server (s3rver, from devDependencies) for Docker-less development and tests.
 *
 *   node --openssl-legacy-provider infra/s3-server.mjs [--port 9000] [--address 127.0.0.1]
 *        [--directory .data/s3] [--bucket cacheblend]...
 *
 * Environment fallbacks: S3_PORT, S3_ADDRESS, S3_DIR (default $DATA_DIR/s3), S3_BUCKET (comma-separated).
 * Port 0 picks a free port. Once listening it prints one JSON line to stdout:
 *   {"endpoint":"http://127.0.0.1:9000","buckets":["cacheblend"],"directory":"/abs/.data/s3","pid":123}
 * Credentials are fixed by s3rver: access key S3RVER, secret S3RVER. Use path-style addressing.
 *
 * --openssl-legacy-provider is needed on Node >= 17: s3rver encrypts ListObjectsV2 continuation tokens
 * with DES, which OpenSSL 3 only offers through its legacy provider; without it, listing more than one
 * page (1000 keys) fails with HTTP 500.
 *
 * s3rver is a test double, not a production store: it overwrites objects in place (a reader racing an
 * overwrite can see a torn object) and ignores Content-MD5. Use MinIO or S3 for anything real.
 *
 * Fault injection for tests: SIGUSR2 toggles read-only mode, in which writes and deletes are answered
 * `403 AccessDenied` (as a bucket policy that denies writes would) while reads work.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout } from 'node:timers';
import { parseArgs } from 'node:util';
import S3rver from 's3rver';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    address: { type: 'string' },
    directory: { type: 'string' },
    bucket: { type: 'string', multiple: true },
    verbose: { type: 'boolean', default: false },
  },
});

const port = Number(values.port ?? process.env.S3_PORT ?? 9000);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`s3-server: invalid port ${values.port ?? process.env.S3_PORT}`);
  process.exit(2);
}
const address = values.address ?? process.env.S3_ADDRESS ?? '127.0.0.1';
const directory = path.resolve(
  values.directory ?? process.env.S3_DIR ?? path.join(process.env.DATA_DIR || '.data', 's3'),
);
const buckets = (values.bucket ?? (process.env.S3_BUCKET || 'cacheblend').split(','))
  .map((b) => b.trim())
  .filter(Boolean);

mkdirSync(directory, { recursive: true });
const server = new S3rver({
  address,
  port,
  directory,
  silent: !values.verbose,
  configureBuckets: buckets.map((name) => ({ name })),
});

let readOnly = false;
process.on('SIGUSR2', () => {
  readOnly = !readOnly;
  console.error(`s3-server: read-only ${readOnly ? 'on' : 'off'}`);
});
// Runs before s3rver's own middleware (Koa composes the array when the server starts).
server.middleware.unshift(async (ctx, next) => {
  if (readOnly && ['PUT', 'POST', 'DELETE'].includes(ctx.method)) {
    ctx.req.resume(); // drain the upload
    ctx.status = 403;
    ctx.type = 'application/xml';
    ctx.body =
      '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>' +
      '<Message>the store is read-only</Message></Error>';
    return;
  }
  await next();
});

let info;
try {
  info = await server.run();
} catch (err) {
  console.error(
    `s3-server: cannot listen on ${address}:${port}: ${err instanceof Error ? err.message : err}`,
  );
  process.exit(1);
}
const host = info.address.includes(':') ? `[${info.address}]` : info.address;
console.log(
  JSON.stringify({ endpoint: `http://${host}:${info.port}`, buckets, directory, pid: process.pid }),
);

let closing = false;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (closing) return;
    closing = true;
    const timer = setTimeout(() => process.exit(0), 2000);
    timer.unref();
    server.close().then(
      () => process.exit(0),
      () => process.exit(0),
    );
  });
}
