/**
 * What a checkpoint's load computes, kept on disk for the next start: the model fingerprint (a sha256 over
 * every weight, so as slow as reading the whole checkpoint) cached by the identity of the checkpoint's
 * files, and the converted matrices (q4 and q8 quantization; bf16 rounded to fp16) cached by the
 * fingerprint, the format and this code's version.
 *
 * Where: `<checkpoint>/.cacheblend/`, or — where that folder cannot be written (a read-only checkpoint) —
 * a folder of the user's cache (`$XDG_CACHE_HOME` or `~/.cache`, `/cacheblend/weights/<checkpoint id>`);
 * `CACHEBLEND_WEIGHT_CACHE` names another root, or `off`. Every file is checked before it is served (its
 * key, sizes and a CRC32 of all its bytes): a truncated, corrupt or mismatched file is a miss, recomputed and
 * rewritten. Entries live under the fingerprint, so one model's conversions are never read for another.
 */
import { createHash } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';

/** Bump when a cached conversion's bytes would change (quantizer, layout, header). */
export const LOAD_CACHE_VERSION = 1;

const MAGIC = 'CBWC';
const FINGERPRINT_FILE = 'fingerprint.json';

/** The cache's root folder setting: a folder, `off`, or undefined for the default (beside the checkpoint). */
export type LoadCacheSetting = string | undefined;

/**
 * Checkpoints smaller than this are not cached by default: hashing and quantizing them takes about as long
 * as reading a cache, and small model folders (fixtures, the bundled models) stay as they are.
 */
export const LOAD_CACHE_MIN_BYTES = 256 * 2 ** 20;

/** A file's identity as the file system reports it: what a rewrite would change. */
interface FileIdentity {
  path: string;
  size: number;
  mtimeNs: string;
  ino: number;
}

function identify(file: string): FileIdentity {
  const s = statSync(file, { bigint: true });
  return { path: file, size: Number(s.size), mtimeNs: s.mtimeNs.toString(), ino: Number(s.ino) };
}

/** A folder this process can create and write to, or false. */
function writable(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The user's cache folder (XDG), where a read-only checkpoint's conversions go. */
export function userCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'cacheblend', 'weights');
}

/** Write a file whole or not at all (a crash or a second process never leaves half a file under its name). */
function writeAtomic(file: string, data: Uint8Array | string): void {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } catch {
    rmSync(tmp, { force: true });
  }
}

/** An entry's header: magic, key, segment count, each segment's size. */
function entryHead(key: string, sizes: readonly number[]): Buffer {
  const head = Buffer.alloc(4 + 32 + 4 + 8 * sizes.length);
  head.write(MAGIC, 0, 'latin1');
  Buffer.from(key, 'hex').copy(head, 4);
  head.writeUInt32LE(sizes.length, 36);
  sizes.forEach((n, i) => head.writeBigUInt64LE(BigInt(n), 40 + 8 * i));
  return head;
}

function writeAll(fd: number, data: Uint8Array): void {
  for (let done = 0; done < data.byteLength;) done += writeSync(fd, data, done, data.byteLength - done);
}

/** Read exactly `into.byteLength` bytes at `at`; false when the file ends first. */
function readAll(fd: number, into: Uint8Array, at: number): boolean {
  for (let done = 0; done < into.byteLength;) {
    const n = readSync(fd, into, done, into.byteLength - done, at + done);
    if (n === 0) return false;
    done += n;
  }
  return true;
}

/** An entry's segments if its header, sizes and CRC are those expected, else null. */
function readEntry(fd: number, key: string, sizes: readonly number[]): Uint8Array[] | null {
  const want = entryHead(key, sizes);
  const total = want.length + sizes.reduce((a, b) => a + b, 0) + 4;
  if (fstatSync(fd).size !== total) return null;
  const head = Buffer.alloc(want.length);
  if (!readAll(fd, head, 0) || !head.equals(want)) return null;
  let crc = crc32(head);
  let at = head.length;
  const out: Uint8Array[] = [];
  for (const n of sizes) {
    const seg = new Uint8Array(n);
    if (!readAll(fd, seg, at)) return null;
    crc = crc32(seg, crc);
    out.push(seg);
    at += n;
  }
  const tail = Buffer.alloc(4);
  return readAll(fd, tail, at) && tail.readUInt32LE(0) === crc ? out : null;
}

/** Counts of what the cache served and wrote during this process (benchmarks and tests read them). */
export const loadCacheStats = { fingerprintHits: 0, matrixHits: 0, matrixWrites: 0, rejected: 0 };

/**
 * One checkpoint's cache folder. The fingerprint is looked up first (`fingerprint`); conversions are served
 * only once it is known (`bind`), under it.
 */
export class LoadCache {
  private entries: string | null = null;

  private constructor(
    readonly dir: string,
    private readonly files: readonly FileIdentity[],
  ) {}

  /**
   * The cache of the checkpoint in `root` made of `files`, or null where the setting is `off`, the
   * checkpoint is smaller than `minBytes` or no folder can be written (loading then computes everything).
   */
  static open(
    root: string,
    files: readonly string[],
    setting?: LoadCacheSetting,
    minBytes = LOAD_CACHE_MIN_BYTES,
  ): LoadCache | null {
    if (setting === 'off') return null;
    const identities = files.map(identify);
    if (identities.reduce((n, f) => n + f.size, 0) < minBytes) return null;
    const id = createHash('sha256').update(path.resolve(root)).digest('hex').slice(0, 16);
    const candidates = setting
      ? [path.join(path.resolve(setting), id)]
      : [path.join(root, '.cacheblend'), path.join(userCacheDir(), id)];
    const dir = candidates.find(writable);
    if (!dir) return null;
    return new LoadCache(dir, identities);
  }

  /**
   * The model's fingerprint: the cached one while the checkpoint's files (path, size, mtime, inode) and
   * the config are those it was computed for, else `compute()`'s, then cached.
   */
  fingerprint(configJson: string, compute: () => string): string {
    const config = createHash('sha256').update(configJson).digest('hex');
    const want = JSON.stringify({ v: LOAD_CACHE_VERSION, config, files: this.files });
    const file = path.join(this.dir, FINGERPRINT_FILE);
    const check = (fp: string) => createHash('sha256').update(`${want}\n${fp}`).digest('hex');
    try {
      const got = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      const fp = got.fingerprint;
      if (got.key === want && typeof fp === 'string' && got.check === check(fp)) {
        loadCacheStats.fingerprintHits++;
        return fp;
      }
    } catch {
      // missing or unreadable: computed below
    }
    const fingerprint = compute();
    writeAtomic(file, JSON.stringify({ key: want, fingerprint, check: check(fingerprint) }));
    return fingerprint;
  }

  /**
   * Serve and store conversions of the model with this fingerprint; conversions cached for an earlier
   * content of the checkpoint (another fingerprint) are deleted.
   */
  bind(fingerprint: string): void {
    const name = fingerprint.slice(0, 32);
    this.entries = path.join(this.dir, name);
    try {
      for (const d of readdirSync(this.dir, { withFileTypes: true }))
        if (d.isDirectory() && d.name !== name)
          rmSync(path.join(this.dir, d.name), { recursive: true, force: true });
    } catch {
      // another process may be pruning too
    }
  }

  /** The entry key of a conversion: the fingerprint's folder, the parts it was made of and how. */
  private key(what: object): string {
    return createHash('sha256')
      .update(JSON.stringify({ v: LOAD_CACHE_VERSION, what }))
      .digest('hex');
  }

  /**
   * The cached byte segments of a conversion, of the given sizes, or null (nothing bound, no entry, or an
   * entry that fails any check: the caller's `put` then overwrites it). Each segment is read straight into
   * an array of its own (no whole-file buffer to copy out of), the CRC taken as it goes.
   */
  get(what: object, sizes: readonly number[]): Uint8Array[] | null {
    if (!this.entries) return null;
    const key = this.key(what);
    let fd: number;
    try {
      fd = openSync(path.join(this.entries, `${key}.bin`), 'r');
    } catch {
      return null;
    }
    try {
      const out = readEntry(fd, key, sizes);
      if (out) loadCacheStats.matrixHits++;
      else loadCacheStats.rejected++;
      return out;
    } finally {
      closeSync(fd);
    }
  }

  /** Store a conversion's segments under `what` (best effort: a full or read-only disk means no cache). */
  put(what: object, segments: readonly ArrayBufferView[]): void {
    if (!this.entries || !writable(this.entries)) return;
    const key = this.key(what);
    const parts = [
      entryHead(
        key,
        segments.map((v) => v.byteLength),
      ),
      ...segments.map((v) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength)),
    ];
    const file = path.join(this.entries, `${key}.bin`);
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      const fd = openSync(tmp, 'w');
      try {
        let crc = 0;
        for (const p of parts) {
          writeAll(fd, p);
          crc = crc32(p, crc);
        }
        const tail = Buffer.alloc(4);
        tail.writeUInt32LE(crc);
        writeAll(fd, tail);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, file);
      loadCacheStats.matrixWrites++;
    } catch {
      rmSync(tmp, { force: true });
    }
  }
}
