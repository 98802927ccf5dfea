/** The disk tier keeps under its byte bound, evicts the least recently used, and re-indexes on restart. */
import { mkdtemp, readdir, rm, stat, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DiskTier } from '../../core/cache/disk-tier.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-disk-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function filesUnder(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && !e.parentPath.includes('.tmp'))
      out.push(path.relative(root, path.join(e.parentPath, e.name)));
  }
  return out.sort();
}

const obj = (n: number, fill: number) => Buffer.alloc(n, fill);

/** Bytes of every file under `root`, staged writes included: what the tier takes on disk now. */
async function bytesOnDisk(root: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(path.join(e.parentPath, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

describe('DiskTier', () => {
  it('never holds more than its bound on disk, not even while it evicts (DISK_CACHE_BYTES 400,000)', async () => {
    const tier = new DiskTier(dir, 400_000);
    for (let i = 0; i < 8; i++) {
      await tier.put(`kv/s${i}.kv`, obj(100_000, i)); // from the fifth on, each put must evict one
      expect(await bytesOnDisk(dir), `after put ${i}`).toBeLessThanOrEqual(400_000);
    }
    for (let round = 0; round < 3; round++) {
      const puts = Array.from({ length: 8 }, (_, i) => tier.put(`kv/c${round}-${i}.kv`, obj(90_000, i)));
      let peak = 0;
      let done = false;
      const all = Promise.all(puts).finally(() => (done = true));
      while (!done) {
        peak = Math.max(peak, await bytesOnDisk(dir));
        await new Promise((r) => setImmediate(r));
      }
      await all;
      peak = Math.max(peak, await bytesOnDisk(dir));
      expect(peak, `round ${round}`).toBeLessThanOrEqual(400_000);
    }
    await tier.settle();
    expect(tier.bytes).toBe(await bytesOnDisk(dir));
  });

  it('evicts the least recently used objects to stay within its bound', async () => {
    const tier = new DiskTier(dir, 3_000);
    await tier.put('kv/a.kv', obj(1_000, 1));
    await tier.put('kv/b.kv', obj(1_000, 2));
    await tier.put('kv/c.kv', obj(1_000, 3));
    expect(await tier.getRange('kv/a.kv', 0, 10)).not.toBeNull(); // a is now the most recent
    await tier.put('kv/d.kv', obj(1_000, 4)); // b goes
    await tier.settle();
    expect(tier.bytes).toBe(3_000);
    expect(await filesUnder(dir)).toEqual(['kv/a.kv', 'kv/c.kv', 'kv/d.kv']);
    expect(await tier.get('kv/b.kv')).toBeNull();
    await tier.put('kv/huge.kv', obj(5_000, 5)); // larger than the bound: never kept
    await tier.settle();
    expect(await tier.head('kv/huge.kv')).toBeNull();
    expect(tier.bytes).toBeLessThanOrEqual(3_000);
  });

  it('rebuilds its index from the directory, oldest first, and trims to a smaller bound', async () => {
    const first = new DiskTier(dir, 10_000);
    for (const [i, name] of ['old', 'mid', 'new'].entries()) {
      await first.put(`kv/${name}.kv`, obj(1_000, i));
      const t = new Date(Date.now() - (3 - i) * 60_000);
      await utimes(path.join(dir, 'kv', `${name}.kv`), t, t);
    }
    await first.close();
    const second = new DiskTier(dir, 2_000);
    await second.settle();
    expect(second.bytes).toBe(2_000);
    expect(await filesUnder(dir)).toEqual(['kv/mid.kv', 'kv/new.kv']);
    await second.delete('kv/new.kv');
    expect(second.bytes).toBe(1_000);
    expect(await filesUnder(dir)).toEqual(['kv/mid.kv']);
  });
});
