import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { StorageError, UnavailableError } from '../../core/errors.js';
import { openObjectStore } from '../../core/storage/index.js';
import { s3ClientConfig } from '../../core/storage/s3-config.js';
import type { StoreDeadlines } from '../../core/storage/deadline.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { RGW_SKIPPED, rgwLabel } from '../helpers/rgw.js';
import { freePort, uniquePrefix } from '../helpers/services.js';
import { MiB, collect, sha256, useS3 } from '../helpers/stores.js';

const servers = { s3rver: useS3(), radosgw: useS3('radosgw') };

describe('s3 store specifics', () => {
  it('fails fast with UnavailableError when the endpoint is not listening', async () => {
    const port = await freePort();
    const store = openObjectStore('s3://cacheblend', {
      s3: {
        endpoint: `http://127.0.0.1:${port}`,
        accessKeyId: 'x',
        secretAccessKey: 'y',
        maxAttempts: 1,
        connectTimeoutMs: 1_000,
        requestTimeoutMs: 2_000,
      },
    });
    try {
      const started = Date.now();
      await expect(store.ping()).rejects.toBeInstanceOf(UnavailableError);
      await expect(store.get('k')).rejects.toBeInstanceOf(UnavailableError);
      await expect(store.head('k')).rejects.toBeInstanceOf(UnavailableError);
      await expect(store.getRange('k', 0, 1)).rejects.toBeInstanceOf(UnavailableError);
      await expect(store.put('k', Buffer.from('v'))).rejects.toBeInstanceOf(UnavailableError);
      await expect(store.delete('k')).rejects.toBeInstanceOf(UnavailableError);
      await expect(collect(store.list(''))).rejects.toBeInstanceOf(UnavailableError);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await store.close();
    }
  });
});

/**
 * On s3rver and on radosgw (a real S3 server; skipped, loudly, when the run has none): what the store
 * reports for a missing bucket, wrong credentials, an outage, a slow and a silent server (through a
 * fault proxy in front of it), and the behaviours the service relies on.
 */
describe.each(['s3rver', 'radosgw'] as const)('s3 store on %s', (server) => {
  if (server === 'radosgw' && RGW_SKIPPED) {
    it.skip(rgwLabel('runs on radosgw'), () => undefined);
    return;
  }
  const s3 = servers[server];
  const s3Options = () => s3.options();
  const proxied = (proxy: FaultProxy, deadlines?: StoreDeadlines) =>
    openObjectStore(`s3://${s3.bucket}/faults`, {
      s3: { ...s3Options(), endpoint: proxy.url, maxAttempts: 1 },
      ...(deadlines && { deadlines }),
    });

  // s3rver, a test double, accepts any credentials: only a real server can show what the store reports.
  const realServer = server === 'radosgw' ? it : it.skip;
  realServer('refuses wrong credentials with a StorageError (access denied), quickly', async () => {
    const store = openObjectStore(`s3://${s3.bucket}`, {
      s3: { ...s3Options(), secretAccessKey: `${s3Options().secretAccessKey}-wrong` },
    });
    const stranger = openObjectStore(`s3://${s3.bucket}`, {
      s3: { ...s3Options(), accessKeyId: 'NOSUCHKEY0123456789', secretAccessKey: 'nope' },
    });
    try {
      const t0 = Date.now();
      for (const st of [store, stranger]) {
        await expect(st.ping()).rejects.toBeInstanceOf(StorageError);
        await expect(st.put('k', Buffer.from('v'))).rejects.toThrow(
          /access denied|InvalidAccessKeyId|Signature/i,
        );
        await expect(st.get('k')).rejects.toBeInstanceOf(StorageError);
      }
      expect(Date.now() - t0).toBeLessThan(5_000);
    } finally {
      await store.close();
      await stranger.close();
    }
  });

  it('fails fast with UnavailableError through an outage, and works again after it', async () => {
    const proxy = await startFaultProxy(s3.endpoint);
    const store = proxied(proxy);
    try {
      await store.put('k', Buffer.from('before'));
      await proxy.stop(); // nothing listens: connections are refused
      const t0 = Date.now();
      await expect(store.get('k')).rejects.toBeInstanceOf(UnavailableError);
      await expect(store.put('k', Buffer.from('v'))).rejects.toBeInstanceOf(UnavailableError);
      expect(Date.now() - t0).toBeLessThan(5_000);
    } finally {
      await store.close();
      await proxy.stop();
    }
    const after = openObjectStore(`s3://${s3.bucket}/faults`, { s3: s3Options() });
    try {
      expect((await after.get('k'))?.toString()).toBe('before');
    } finally {
      await after.close();
    }
  });

  it('answers through a slow server within its deadlines, and times out a silent one', async () => {
    const proxy = await startFaultProxy(s3.endpoint);
    const deadlines = { readMs: 1_500, writeMs: 1_500, bytesPerMs: 8 * 1024 };
    const store = proxied(proxy, deadlines);
    try {
      const key = `${uniquePrefix('slow')}obj`;
      proxy.set({ kind: 'delay', delayMs: 300 });
      await store.put(key, Buffer.from('slow'));
      expect((await store.get(key))?.toString()).toBe('slow');
      proxy.set({ kind: 'silent' });
      const t0 = Date.now();
      await expect(store.get(key)).rejects.toBeInstanceOf(UnavailableError);
      await expect(store.put(key, Buffer.from('x'))).rejects.toBeInstanceOf(UnavailableError);
      const ms = Date.now() - t0;
      expect(ms).toBeGreaterThanOrEqual(2 * 1_400);
      expect(ms).toBeLessThan(2 * 1_500 + 2_000);
      proxy.set({ kind: 'pass' });
      expect((await store.get(key))?.toString()).toBe('slow');
    } finally {
      proxy.set({ kind: 'pass' });
      await store.close();
      await proxy.stop();
    }
  });

  it('reports a missing bucket as a StorageError', async () => {
    const store = openObjectStore('s3://no-such-bucket', { s3: s3Options() });
    try {
      await expect(store.ping()).rejects.toBeInstanceOf(StorageError);
      await expect(store.put('k', Buffer.from('v'))).rejects.toBeInstanceOf(StorageError);
    } finally {
      await store.close();
    }
  });

  it('detects objects whose content no longer matches the MD5 recorded at put time', async () => {
    const key = `${uniquePrefix('integrity')}obj`;
    const raw = new S3Client(s3ClientConfig(s3Options()));
    const store = openObjectStore(`s3://${s3.bucket}`, { s3: s3Options() });
    try {
      await raw.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: key,
          Body: Buffer.from('tampered'),
          Metadata: { 'cb-md5': createHash('md5').update('original').digest('hex') },
        }),
      );
      await expect(store.get(key)).rejects.toBeInstanceOf(StorageError);
      // Objects written by other tools carry no MD5 metadata and are returned as they are.
      await raw.send(
        new PutObjectCommand({ Bucket: s3.bucket, Key: `${key}-foreign`, Body: Buffer.from('f') }),
      );
      expect((await store.get(`${key}-foreign`))?.toString()).toBe('f');
    } finally {
      raw.destroy();
      await store.close();
    }
  });

  it("the store's client settings upload streamed 10 MiB bodies byte-exactly", async () => {
    // With the SDK's default checksum mode, a streamed body goes out aws-chunked with a trailing CRC32,
    // which s3rver stored verbatim (10,485,816 bytes for 10 MiB sent as two chunks). put() sends
    // Buffers, but the pinned WHEN_REQUIRED settings must hold for streams too.
    const raw = new S3Client(s3ClientConfig(s3Options()));
    try {
      const key = `${uniquePrefix('stream')}obj`;
      const data = randomBytes(10 * MiB);
      await raw.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: key,
          Body: Readable.from([data.subarray(0, 5_000_000), data.subarray(5_000_000)]),
          ContentLength: data.length,
        }),
      );
      const head = await raw.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }));
      expect(head.ContentLength).toBe(data.length);
      const res = await raw.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
      const back = Buffer.from(await res.Body!.transformToByteArray());
      expect(sha256(back)).toBe(sha256(data));
    } finally {
      raw.destroy();
    }
  });

  it('keeps prefixed stores apart', async () => {
    const a = openObjectStore(`s3://${s3.bucket}/tenant-a`, { s3: s3Options() });
    const b = openObjectStore(`s3://${s3.bucket}/tenant-b/`, { s3: s3Options() });
    try {
      const key = `${uniquePrefix('tenant')}obj`;
      await a.put(key, Buffer.from('a'));
      expect(await b.get(key)).toBeNull();
      expect(await collect(b.list(key))).toEqual([]);
      expect(await collect(a.list(key))).toEqual([key]);
      expect(b.describe()).toBe(`s3://${s3.bucket}/tenant-b at ${s3.endpoint}`);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
