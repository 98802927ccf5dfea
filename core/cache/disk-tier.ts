/**
 * The disk tier: a file store bounded in bytes (DISK_CACHE_BYTES), evicting the least recently used
 * objects. The index of what is on disk (key → size, in order of use) is rebuilt from the directory when
 * the tier opens (oldest modification first), so the bound holds across restarts; reads count as uses.
 * One process owns a directory (its index is in memory): give each blend worker its own DISK_CACHE_DIR.
 *
 * The bound holds on disk at every moment, not only once evictions catch up: a put reserves its bytes in
 * the index first, waits until the files it pushed out are deleted, and only then writes; an eviction of
 * an object still being written deletes it once the write is done.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../ops/log.js';
import { FileObjectStore } from '../storage/file.js';
import { ByteLru } from '../storage/lru.js';
import type { ObjectStore } from '../storage/types.js';

export class DiskTier implements ObjectStore {
  private readonly files: FileObjectStore;
  private readonly index: ByteLru<string, number>;
  private readonly ready: Promise<void>;
  private readonly removals = new Set<Promise<void>>();
  /** Writes in flight, by key (an eviction of one waits for it). */
  private readonly writing = new Map<string, Promise<void>>();
  /** While a put reserves its room: the deletions its evictions started. */
  private evicting: Promise<void>[] | null = null;

  constructor(
    root: string,
    readonly maxBytes: number,
    private readonly log: Logger = silentLogger,
  ) {
    this.files = new FileObjectStore(root);
    this.index = new ByteLru<string, number>({
      maxBytes,
      sizeOf: (size) => size,
      onEvict: (key) => this.remove(key),
    });
    this.ready = this.load().catch((err: unknown) =>
      this.log.warn('could not index the disk cache; starting empty', { error: errorMessage(err) }),
    );
  }

  /** Bytes the tier holds now. */
  get bytes(): number {
    return this.index.bytes;
  }

  /** Index what is already on disk, least recently written first; evict down to the bound. */
  private async load(): Promise<void> {
    const found: { key: string; size: number; mtime: number }[] = [];
    for await (const key of this.files.list('')) {
      const info = await stat(path.join(this.files.root, ...key.split('/'))).catch(() => null);
      if (info?.isFile()) found.push({ key, size: info.size, mtime: info.mtimeMs });
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) if (!this.index.set(f.key, f.size)) this.remove(f.key);
  }

  private remove(key: string): void {
    const written = this.writing.get(key)?.catch(() => undefined) ?? Promise.resolve();
    const done: Promise<void> = written
      .then(() => this.files.delete(key))
      .catch((err: unknown) =>
        this.log.warn('could not evict from the disk cache', { key, error: errorMessage(err) }),
      )
      .finally(() => this.removals.delete(done));
    this.removals.add(done);
    this.evicting?.push(done);
  }

  /** Resolves once evictions started so far are done (tests). */
  async settle(): Promise<void> {
    await this.ready;
    await Promise.all([...this.removals]);
  }

  async get(key: string): Promise<Buffer | null> {
    await this.ready;
    const data = await this.files.get(key);
    this.touch(key, data?.length ?? null);
    return data;
  }

  async getRange(key: string, start: number, endExclusive: number): Promise<Buffer | null> {
    await this.ready;
    const data = await this.files.getRange(key, start, endExclusive);
    if (data === null) this.index.delete(key);
    else this.index.get(key); // a use
    return data;
  }

  async head(key: string): Promise<{ size: number } | null> {
    await this.ready;
    return this.files.head(key);
  }

  async put(key: string, data: Buffer): Promise<void> {
    await this.ready;
    if (data.length > this.maxBytes) return; // could never stay
    const prior = this.writing.get(key)?.catch(() => undefined); // one write of a key at a time
    const evicted: Promise<void>[] = (this.evicting = []);
    try {
      this.index.set(key, data.length); // reserve: pushes older objects out of the index
    } finally {
      this.evicting = null;
    }
    // Registered at once, so an eviction of this key from now on waits for the write to land first.
    const write = (async () => {
      await Promise.all(evicted); // their files are gone before the new bytes land
      await prior;
      await this.files.put(key, data);
    })();
    this.writing.set(key, write);
    try {
      await write;
    } catch (err) {
      if (this.index.peek(key) === data.length) this.index.delete(key);
      throw err;
    } finally {
      if (this.writing.get(key) === write) this.writing.delete(key);
    }
  }

  async delete(key: string): Promise<void> {
    await this.ready;
    this.index.delete(key);
    await this.writing.get(key)?.catch(() => undefined); // else the write would bring it back
    await this.files.delete(key);
  }

  list(prefix: string): AsyncIterable<string> {
    return this.files.list(prefix);
  }

  ping(): Promise<void> {
    return this.files.ping();
  }

  describe(): string {
    return `${this.files.describe()} (≤ ${this.maxBytes} bytes)`;
  }

  async close(): Promise<void> {
    await this.settle();
  }

  private touch(key: string, size: number | null): void {
    if (size === null) this.index.delete(key);
    else if (!this.index.get(key)) this.index.set(key, size);
  }
}
