import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, InvalidArgumentError, StorageError, UnavailableError } from '../../core/errors.js';
import { DeadlineObjectStore, openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { s3ClientConfig } from '../../core/storage/s3.js';
import { freePort, startS3, uniquePrefix, type S3Handle } from '../helpers/services.js';

const MiB = 1024 * 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** All keys of a listing, sorted (list order is unspecified; s3rver's differs from S3's byte order). */
async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const key of iterable) out.push(key);
  return out.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

let s3: S3Handle;
const tmpDirs: string[] = [];

beforeAll(async () => {
  s3 = await startS3();
});

afterAll(async () => {
  await s3?.stop();
  await Promise.all(tmpDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-store-'));
  tmpDirs.push(dir);
  return dir;
}

const s3Options = () => ({
  endpoint: s3.endpoint,
  region: s3.region,
  accessKeyId: s3.accessKeyId,
  secretAccessKey: s3.secretAccessKey,
  forcePathStyle: true,
});

interface Backend {
  name: string;
  open(): Promise<ObjectStore>;
  /** Lists in ascending byte order (S3 does too, but the s3rver test double does not). */
  sortedListing: boolean;
  /**
   * s3rver answers a ranged GET of an empty object with Content-Length 1 and no body, then resets the
   * connection (AWS S3 and MinIO answer 416); only s3rver skips that check.
   */
  brokenEmptyRange: boolean;
  /**
   * PUT replaces objects atomically. AWS S3 and MinIO do; s3rver writes the object file in place (and
   * synthesizes metadata for a half-written file), so a reader racing a PUT can see a torn object.
   */
  atomicServer: boolean;
}

const backends: Backend[] = [
  {
    name: 'memory',
    open: async () => openObjectStore('memory://'),
    sortedListing: true,
    brokenEmptyRange: false,
    atomicServer: true,
  },
  {
    name: 'file',
    open: async () => openObjectStore(`file://${await tempDir()}`),
    sortedListing: true,
    brokenEmptyRange: false,
    atomicServer: true,
  },
  {
    name: 's3 (bucket root)',
    open: async () => openObjectStore(`s3://${s3.bucket}`, { s3: s3Options() }),
    sortedListing: false,
    brokenEmptyRange: true,
    atomicServer: false,
  },
  {
    name: 's3 (under a prefix)',
    open: async () => openObjectStore(`s3://${s3.bucket}/deploy/kv`, { s3: s3Options() }),
    sortedListing: false,
    brokenEmptyRange: true,
    atomicServer: false,
  },
];

describe.each(backends)('ObjectStore contract: $name', (backend) => {
  let store: ObjectStore;

  beforeAll(async () => {
    store = await backend.open();
    await store.ping();
  });

  afterAll(async () => {
    await store?.close();
  });

  it('round-trips 10 MiB of random bytes exactly', async () => {
    const key = `${uniquePrefix('big')}blob.kv`;
    const data = randomBytes(10 * MiB);
    await store.put(key, data);
    expect(await store.head(key)).toEqual({ size: data.length });
    const back = await store.get(key);
    expect(back).not.toBeNull();
    expect(back!.length).toBe(data.length);
    expect(sha256(back!)).toBe(sha256(data));
  });

  it('reads ranges at odd offsets, clamped to the object', async () => {
    const key = `${uniquePrefix('range')}obj`;
    const data = randomBytes(3 * MiB + 12_345);
    await store.put(key, data);
    const n = data.length;
    const ranges: [number, number][] = [
      [0, 1],
      [1, 2],
      [7, 8_193],
      [12_345, 1_234_567],
      [MiB - 1, 2 * MiB + 3],
      [n - 7, n],
      [0, n],
      [n - 7, n + 100],
    ];
    for (const [start, end] of ranges) {
      const got = await store.getRange(key, start, end);
      expect(got, `[${start}, ${end})`).not.toBeNull();
      expect(got!.equals(data.subarray(start, Math.min(end, n))), `[${start}, ${end})`).toBe(true);
    }
    expect((await store.getRange(key, 5, 5))?.length).toBe(0);
    expect((await store.getRange(key, n, n + 5))?.length).toBe(0);
    expect((await store.getRange(key, n + 10, n + 20))?.length).toBe(0);
  });

  it('rejects invalid ranges', async () => {
    const key = `${uniquePrefix('badrange')}obj`;
    await store.put(key, Buffer.from('hello'));
    for (const [start, end] of [
      [3, 2],
      [-1, 2],
      [0.5, 2],
      [0, Number.NaN],
    ]) {
      await expect(store.getRange(key, start, end)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
  });

  it('answers null for missing objects and ignores deleting them', async () => {
    const key = `${uniquePrefix('missing')}nothing-here`;
    expect(await store.get(key)).toBeNull();
    expect(await store.head(key)).toBeNull();
    expect(await store.getRange(key, 0, 10)).toBeNull();
    expect(await store.getRange(key, 3, 3)).toBeNull();
    await store.delete(key);
    expect(await collect(store.list(key))).toEqual([]);
  });

  it('stores empty objects', async () => {
    const key = `${uniquePrefix('empty')}zero`;
    await store.put(key, Buffer.alloc(0));
    expect(await store.head(key)).toEqual({ size: 0 });
    expect((await store.get(key))?.length).toBe(0);
    expect((await store.getRange(key, 0, 0))?.length).toBe(0);
    if (!backend.brokenEmptyRange) expect((await store.getRange(key, 0, 10))?.length).toBe(0);
  });

  it('replaces objects whole on overwrite (longer, then shorter)', async () => {
    const key = `${uniquePrefix('overwrite')}obj`;
    const small = randomBytes(1000);
    const large = randomBytes(MiB + 3);
    const smaller = randomBytes(10);
    await store.put(key, small);
    await store.put(key, large);
    expect(sha256((await store.get(key))!)).toBe(sha256(large));
    await store.put(key, smaller);
    expect((await store.get(key))!.equals(smaller)).toBe(true);
    expect(await store.head(key)).toEqual({ size: 10 });
  });

  it('is not affected by callers mutating their buffers', async () => {
    const key = `${uniquePrefix('mutate')}obj`;
    const data = Buffer.from('original');
    await store.put(key, data);
    data.fill(0);
    const back = (await store.get(key))!;
    expect(back.toString()).toBe('original');
    back.fill(1);
    expect((await store.get(key))!.toString()).toBe('original');
  });

  it('deletes objects', async () => {
    const prefix = uniquePrefix('delete');
    await store.put(`${prefix}a`, Buffer.from('a'));
    await store.put(`${prefix}b`, Buffer.from('b'));
    await store.delete(`${prefix}a`);
    expect(await store.get(`${prefix}a`)).toBeNull();
    expect(await store.head(`${prefix}a`)).toBeNull();
    expect(await collect(store.list(prefix))).toEqual([`${prefix}b`]);
  });

  it('lists by plain string prefix', async () => {
    const p = uniquePrefix('list');
    const keys = ['a/b/1', 'a/b/2', 'a/c', 'ab', 'a-x', 'b/deep/er/still', 'z'].map((k) => p + k);
    for (const key of [...keys].reverse()) await store.put(key, Buffer.from(key));
    expect(await collect(store.list(p))).toEqual(
      ['a-x', 'a/b/1', 'a/b/2', 'a/c', 'ab', 'b/deep/er/still', 'z'].map((k) => p + k),
    );
    expect(await collect(store.list(`${p}a/`))).toEqual(['a/b/1', 'a/b/2', 'a/c'].map((k) => p + k));
    expect(await collect(store.list(`${p}a`))).toEqual(
      ['a-x', 'a/b/1', 'a/b/2', 'a/c', 'ab'].map((k) => p + k),
    );
    expect(await collect(store.list(`${p}a/b/`))).toEqual(['a/b/1', 'a/b/2'].map((k) => p + k));
    expect(await collect(store.list(`${p}a/b/1`))).toEqual([`${p}a/b/1`]);
    expect(await collect(store.list(`${p}b/de`))).toEqual([`${p}b/deep/er/still`]);
    expect(await collect(store.list(`${p}nothing`))).toEqual([]);
    expect(await collect(store.list(`${p}a/nothing/`))).toEqual([]);
    const everything = await collect(store.list(''));
    expect(everything).toEqual(expect.arrayContaining(keys));
    if (backend.sortedListing) {
      const raw: string[] = [];
      for await (const key of store.list(p)) raw.push(key);
      expect(raw).toEqual(['a-x', 'a/b/1', 'a/b/2', 'a/c', 'ab', 'b/deep/er/still', 'z'].map((k) => p + k));
    }
  });

  it('lists more than one page of keys', async () => {
    const p = uniquePrefix('many');
    const keys = Array.from({ length: 1100 }, (_, i) => `${p}k${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 100) {
      await Promise.all(keys.slice(i, i + 100).map((key) => store.put(key, Buffer.from([1]))));
    }
    expect(await collect(store.list(p))).toEqual(keys);
  });

  it('handles non-ASCII keys and spaces', async () => {
    const p = uniquePrefix('unicode');
    const key = `${p}ünï/cødé ✓ (1)+x.bin`;
    await store.put(key, Buffer.from('unicode'));
    expect((await store.get(key))?.toString()).toBe('unicode');
    expect(await collect(store.list(p))).toEqual([key]);
  });

  it('puts atomically: concurrent readers see the old or the new object, never a partial one', async (ctx) => {
    if (!backend.atomicServer)
      ctx.skip('s3rver overwrites objects in place; AWS S3 and MinIO PUTs are atomic');
    const p = uniquePrefix('atomic');
    const key = `${p}obj`;
    const fresh = randomBytes(10 * MiB);
    const hashes = new Set([sha256(fresh)]);
    // A new key: readers see nothing or everything.
    const seen = await readWhile(store, key, store.put(key, fresh));
    for (const result of seen) if (result !== null) expect(hashes.has(sha256(result))).toBe(true);
    // An overwrite: readers see the old or the new object.
    const next = randomBytes(10 * MiB);
    hashes.add(sha256(next));
    const seen2 = await readWhile(store, key, store.put(key, next));
    for (const result of seen2) {
      expect(result).not.toBeNull();
      expect(hashes.has(sha256(result!))).toBe(true);
    }
    expect(sha256((await store.get(key))!)).toBe(sha256(next));
  });

  it('never lists staging or temporary objects', async () => {
    const p = uniquePrefix('staging');
    await Promise.all([1, 2, 3].map((i) => store.put(`${p}obj`, randomBytes(MiB * i))));
    await store.put(`${p}other`, Buffer.from('x'));
    expect(await collect(store.list(p))).toEqual([`${p}obj`, `${p}other`]);
    expect((await collect(store.list(''))).some((k) => k.startsWith('.tmp'))).toBe(false);
  });

  it('handles many concurrent puts to different keys', async () => {
    const p = uniquePrefix('concurrent');
    const items = Array.from({ length: 32 }, (_, i) => ({ key: `${p}${i}/v`, data: randomBytes(1000 + i) }));
    await Promise.all(items.map(({ key, data }) => store.put(key, data)));
    for (const { key, data } of items) expect((await store.get(key))!.equals(data)).toBe(true);
    expect(await collect(store.list(p))).toHaveLength(items.length);
  });

  it.each([
    '',
    '/abs',
    'a/../b',
    '..',
    '.',
    'a/./b',
    'a//b',
    'a/',
    '.tmp/x',
    'a\\b',
    'a\u0000b',
    'x'.repeat(1025),
  ])('rejects the invalid key %j', async (key) => {
    await expect(store.get(key)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.getRange(key, 0, 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.head(key)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.put(key, Buffer.from('x'))).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.delete(key)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('rejects invalid list prefixes', async () => {
    for (const prefix of ['/abs', '../x', 'a/../', 'a//']) {
      await expect(collect(store.list(prefix))).rejects.toBeInstanceOf(InvalidArgumentError);
    }
  });

  it('describes itself without secrets', () => {
    const text = store.describe();
    expect(text).toMatch(/^(memory|file|s3):\/\//);
    expect(text).not.toContain('S3RVER');
  });
});

/** Reads `key` in a loop until `pending` settles (plus one final read); returns what it saw. */
async function readWhile(
  store: ObjectStore,
  key: string,
  pending: Promise<void>,
): Promise<(Buffer | null)[]> {
  let done = false;
  const finished = pending.finally(() => {
    done = true;
  });
  const seen: (Buffer | null)[] = [];
  while (!done) seen.push(await store.get(key));
  await finished;
  seen.push(await store.get(key));
  return seen;
}

describe('file store specifics', () => {
  it('never lists staged (in-progress or crashed) writes and cleans up stale ones', async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, '.tmp'), { recursive: true });
    const stale = path.join(dir, '.tmp', 'crashed-writer');
    const live = path.join(dir, '.tmp', 'in-progress');
    await writeFile(stale, 'partial');
    await writeFile(live, 'partial');
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(stale, old, old);
    const store = openObjectStore(`file://${dir}`);
    await store.put('k', Buffer.from('v'));
    expect(await collect(store.list(''))).toEqual(['k']);
    expect(await readdir(path.join(dir, '.tmp'))).toEqual(['in-progress']);
  });

  it('leaves no staged file behind after puts, failed ones included', async () => {
    const dir = await tempDir();
    const store = openObjectStore(`file://${dir}`);
    await store.put('a', Buffer.from('file'));
    // 'a' is a file, so 'a/b' cannot be created in a file store.
    await expect(store.put('a/b', Buffer.from('x'))).rejects.toBeInstanceOf(StorageError);
    expect(await readdir(path.join(dir, '.tmp'))).toEqual([]);
    expect(await collect(store.list(''))).toEqual(['a']);
    expect((await store.get('a'))!.toString()).toBe('file');
  });

  it('treats a "directory" key as missing', async () => {
    const store = openObjectStore(`file://${await tempDir()}`);
    await store.put('dir/obj', Buffer.from('x'));
    expect(await store.get('dir')).toBeNull();
    expect(await store.head('dir')).toBeNull();
    expect(await store.getRange('dir', 0, 1)).toBeNull();
    await store.delete('dir');
    expect(await store.get('dir/obj')).not.toBeNull();
  });

  it('resolves relative file:// URLs against cwd', async () => {
    const dir = await tempDir();
    for (const url of ['file://./rel/kv', 'file://rel/kv']) {
      const store = openObjectStore(url, { cwd: dir });
      expect(store).toBeInstanceOf(DeadlineObjectStore); // a FileObjectStore with deadlines
      expect(store.describe()).toBe(`file://${path.join(dir, 'rel/kv')}`);
    }
    const store = openObjectStore('file://./rel/kv', { cwd: dir });
    await store.put('x/y', Buffer.from('z'));
    expect(await readdir(path.join(dir, 'rel', 'kv', 'x'))).toEqual(['y']);
  });

  it('ping fails with UnavailableError when the directory cannot be created', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'file'), 'x');
    const store = openObjectStore(`file://${path.join(dir, 'file', 'sub')}`);
    await expect(store.ping()).rejects.toBeInstanceOf(UnavailableError);
  });
});

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

describe('openObjectStore', () => {
  it.each([
    'ftp://x/y',
    'redis://localhost',
    'kv',
    '/abs/path',
    'file://',
    's3://',
    's3://Bad_Bucket/x',
    's3://ok-bucket/../x',
  ])('rejects %j with ConfigError', (url) => {
    expect(() => openObjectStore(url)).toThrow(ConfigError);
  });

  it('shares named memory stores and isolates anonymous ones', async () => {
    const name = `shared-${uniquePrefix().slice(0, -1)}`;
    await openObjectStore(`memory://${name}`).put('k', Buffer.from('v'));
    expect((await openObjectStore(`memory://${name}`).get('k'))?.toString()).toBe('v');
    await openObjectStore('memory://').put('k', Buffer.from('v'));
    expect(await openObjectStore('memory://').get('k')).toBeNull();
  });
});
