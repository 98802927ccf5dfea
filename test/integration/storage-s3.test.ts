import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { StorageError, UnavailableError } from '../../core/errors.js';
import { openObjectStore } from '../../core/storage/index.js';
import { s3ClientConfig } from '../../core/storage/s3-config.js';
import { freePort, uniquePrefix } from '../helpers/services.js';
import { MiB, collect, sha256, useS3 } from '../helpers/stores.js';

const s3 = useS3();
const s3Options = () => s3.options();

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
