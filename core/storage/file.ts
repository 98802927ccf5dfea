import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { StorageError, UnavailableError, errorMessage } from '../errors.js';
import { RESERVED_SEGMENT, validateKey, validatePrefix, validateRange } from './keys.js';
import { compareKeys } from './memory.js';
import type { ObjectStore } from './types.js';

/** Staged files older than this are leftovers of a crashed writer and are removed on first write. */
const STALE_STAGING_MS = 60 * 60 * 1000;

/**
 * Objects as files under a root directory; key `a/b/c` is file `<root>/a/b/c`. Writes go to
 * `<root>/.tmp/<uuid>`, are fsynced, then renamed into place (and the directory fsynced), so an object
 * appears whole or not at all, even across a crash. Because keys become paths, a key cannot be both an
 * object and a "directory" of other objects here (`a` and `a/b`); such a put fails with StorageError.
 */
export class FileObjectStore implements ObjectStore {
  readonly root: string;
  private readonly staging: string;
  private stagingReady: Promise<void> | null = null;

  constructor(root: string) {
    if (!path.isAbsolute(root)) throw new StorageError(`file store root must be absolute: ${root}`);
    this.root = path.resolve(root);
    this.staging = path.join(this.root, RESERVED_SEGMENT);
  }

  private pathOf(key: string): string {
    return path.join(this.root, ...key.split('/'));
  }

  async get(key: string): Promise<Buffer | null> {
    const file = this.pathOf(validateKey(key));
    try {
      return await readFile(file);
    } catch (err) {
      if (isMissing(err)) return null;
      throw new StorageError(`cannot read ${file}: ${errorMessage(err)}`, { cause: err });
    }
  }

  async getRange(key: string, start: number, endExclusive: number): Promise<Buffer | null> {
    validateRange(start, endExclusive);
    const file = this.pathOf(validateKey(key));
    let handle;
    try {
      handle = await open(file, 'r');
    } catch (err) {
      if (isMissing(err)) return null;
      throw new StorageError(`cannot open ${file}: ${errorMessage(err)}`, { cause: err });
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) return null;
      const from = Math.min(start, info.size);
      const length = Math.min(endExclusive, info.size) - from;
      const out = Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(out, filled, length - filled, from + filled);
        if (bytesRead === 0) break; // file shrank under us (cannot happen with rename-only writers)
        filled += bytesRead;
      }
      return filled === length ? out : out.subarray(0, filled);
    } catch (err) {
      if (isMissing(err)) return null;
      throw new StorageError(`cannot read ${file}: ${errorMessage(err)}`, { cause: err });
    } finally {
      await handle.close();
    }
  }

  async head(key: string): Promise<{ size: number } | null> {
    const file = this.pathOf(validateKey(key));
    try {
      const info = await stat(file);
      return info.isFile() ? { size: info.size } : null;
    } catch (err) {
      if (isMissing(err)) return null;
      throw new StorageError(`cannot stat ${file}: ${errorMessage(err)}`, { cause: err });
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    const target = this.pathOf(validateKey(key));
    await this.ensureStaging();
    const tmp = path.join(this.staging, randomUUID());
    try {
      await mkdir(path.dirname(target), { recursive: true });
      const handle = await open(tmp, 'wx', 0o644);
      try {
        let written = 0;
        while (written < data.length) {
          const { bytesWritten } = await handle.write(data, written, data.length - written);
          written += bytesWritten;
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, target);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      const code = errCode(err);
      const hint =
        code === 'ENOTDIR' || code === 'EISDIR' || code === 'EEXIST'
          ? ' (a key cannot be both an object and a prefix of other objects in a file store)'
          : '';
      throw new StorageError(`cannot write ${target}: ${errorMessage(err)}${hint}`, { cause: err });
    }
    await fsyncDir(path.dirname(target));
  }

  async delete(key: string): Promise<void> {
    const file = this.pathOf(validateKey(key));
    try {
      await unlink(file);
    } catch (err) {
      if (isMissing(err)) return;
      throw new StorageError(`cannot delete ${file}: ${errorMessage(err)}`, { cause: err });
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    validatePrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const keys: string[] = [];
    await this.walk(slash >= 0 ? prefix.slice(0, slash) : '', prefix, keys);
    keys.sort(compareKeys);
    yield* keys;
  }

  private async walk(dirKey: string, prefix: string, out: string[]): Promise<void> {
    const dir = dirKey === '' ? this.root : this.pathOf(dirKey);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw new StorageError(`cannot list ${dir}: ${errorMessage(err)}`, { cause: err });
    }
    for (const entry of entries) {
      if (dirKey === '' && entry.name === RESERVED_SEGMENT) continue;
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      if (entry.isDirectory()) {
        if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) await this.walk(key, prefix, out);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        out.push(key);
      }
    }
  }

  async ping(): Promise<void> {
    try {
      await mkdir(this.staging, { recursive: true });
      await access(this.staging, constants.W_OK);
    } catch (err) {
      throw new UnavailableError(`file store ${this.root} is not writable: ${errorMessage(err)}`, {
        cause: err,
      });
    }
  }

  describe(): string {
    return `file://${this.root}`;
  }

  async close(): Promise<void> {}

  private ensureStaging(): Promise<void> {
    this.stagingReady ??= (async () => {
      await mkdir(this.staging, { recursive: true });
      await this.removeStaleStaging();
    })().catch((err: unknown) => {
      this.stagingReady = null;
      throw new StorageError(`cannot create ${this.staging}: ${errorMessage(err)}`, { cause: err });
    });
    return this.stagingReady;
  }

  private async removeStaleStaging(): Promise<void> {
    const cutoff = Date.now() - STALE_STAGING_MS;
    for (const name of await readdir(this.staging).catch(() => [] as string[])) {
      const file = path.join(this.staging, name);
      try {
        if ((await stat(file)).mtimeMs < cutoff) await unlink(file);
      } catch {
        // another process cleaned it up or it is in use: leave it
      }
    }
  }
}

function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

function isMissing(err: unknown): boolean {
  const code = errCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}

/** Makes a rename durable; best effort (some platforms cannot open directories). */
async function fsyncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // not supported here; the rename itself is still atomic
  }
}
