import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../core/errors.js';
import { openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { RGW_SKIPPED, rgwLabel } from '../helpers/rgw.js';
import { uniquePrefix } from '../helpers/services.js';
import { MiB, collect, sha256, useS3, useTempDirs } from '../helpers/stores.js';

/**
 * The ObjectStore contract, run on every backend: the memory, file and S3 stores behave the same, on the
 * s3rver test double and on radosgw (Ceph's S3 gateway, a real S3 server: test/setup/rgw.ts).
 */

const s3 = useS3();
const rgw = useS3('radosgw');
const tempDir = useTempDirs();
const s3Options = () => s3.options();

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
  /** On the run's radosgw (skipped, loudly, when there is none). */
  rgw?: boolean;
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
  // A real S3 server: lists in byte order, answers 416 to a range of an empty object, replaces atomically.
  {
    name: rgwLabel('radosgw (bucket root)'),
    open: async () => openObjectStore(`s3://${rgw.bucket}`, { s3: rgw.options() }),
    sortedListing: true,
    brokenEmptyRange: false,
    atomicServer: true,
    rgw: true,
  },
  {
    name: rgwLabel('radosgw (under a prefix)'),
    open: async () => openObjectStore(`s3://${rgw.bucket}/deploy/kv`, { s3: rgw.options() }),
    sortedListing: true,
    brokenEmptyRange: false,
    atomicServer: true,
    rgw: true,
  },
];

describe.each(backends)('ObjectStore contract: $name', (backend) => {
  if (backend.rgw && RGW_SKIPPED) {
    it.skip(`runs on radosgw (SKIPPED: ${RGW_SKIPPED})`, () => undefined);
    return;
  }
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
