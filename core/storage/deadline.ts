/**
 * Deadlines on object-store operations. A store that stops answering (a hung NFS mount, an S3 endpoint
 * that accepts connections and never replies) must turn into an error the caller can act on — a query
 * recomputes the chunk, an ingest answers 503 — instead of a request that waits forever.
 *
 * The defaults, and why:
 * - reads (get, getRange, head) and deletes: 2 s (a range read plus 1 ms per 8 KiB). A chunk read that
 *   takes longer costs more than recomputing it on the small models served on a CPU (a whole stories260K
 *   query that recomputes its chunks takes about 0.3 s), so waiting longer only delays the answer; the
 *   allowance per byte keeps a large model's layer reads (megabytes) from timing out on a slower link. The S3 client's own default (120 s a request, 3 attempts) would outlast any
 *   query timeout.
 * - writes: 5 s plus 1 ms per 8 KiB (8 MB/s at least): a manifest write finishes in milliseconds on a
 *   healthy store, and a large chunk object gets time in proportion to its size. An ingest whose manifest
 *   cannot be written within this answers 503, well inside any client's timeout.
 * - list: 2 s a page.
 */
import { UnavailableError } from '../errors.js';
import { withTimeout } from '../util/time.js';
import type { ObjectStore } from './types.js';

export interface StoreDeadlines {
  /** get, head, delete, ping and each page of list, in ms; getRange this plus `bytes / bytesPerMs`. */
  readMs: number;
  /** put: this many ms plus `bytes / bytesPerMs`. */
  writeMs: number;
  /** The slowest transfer rate waited for (bytes per ms). */
  bytesPerMs: number;
}

export const DEFAULT_STORE_DEADLINES: Readonly<StoreDeadlines> = Object.freeze({
  readMs: 2_000,
  writeMs: 5_000,
  bytesPerMs: 8 * 1024,
});

/** The deadline of a put of `bytes`. */
export function writeDeadlineMs(d: StoreDeadlines, bytes: number): number {
  return d.writeMs + Math.ceil(bytes / d.bytesPerMs);
}

/** The deadline of a read of `bytes` (0 when unknown). */
export function readDeadlineMs(d: StoreDeadlines, bytes: number): number {
  return d.readMs + Math.ceil(bytes / d.bytesPerMs);
}

/**
 * `store` with every operation bounded by `deadlines` (UnavailableError naming the operation on expiry).
 * The abandoned operation may still finish later; for a put that is harmless (puts are atomic and a
 * retry writes the same bytes). The S3 store aborts its own requests at these deadlines instead, so
 * their sockets are freed.
 */
export class DeadlineObjectStore implements ObjectStore {
  constructor(
    private readonly inner: ObjectStore,
    private readonly deadlines: StoreDeadlines = DEFAULT_STORE_DEADLINES,
  ) {}

  private bound<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    return withTimeout(p, ms, () => timedOut(this.inner.describe(), what, ms));
  }

  get(key: string): Promise<Buffer | null> {
    return this.bound(this.inner.get(key), this.deadlines.readMs, `get ${key}`);
  }

  getRange(key: string, start: number, endExclusive: number): Promise<Buffer | null> {
    const ms = readDeadlineMs(this.deadlines, endExclusive - start);
    return this.bound(this.inner.getRange(key, start, endExclusive), ms, `get ${key}`);
  }

  head(key: string): Promise<{ size: number } | null> {
    return this.bound(this.inner.head(key), this.deadlines.readMs, `head ${key}`);
  }

  put(key: string, data: Buffer): Promise<void> {
    return this.bound(this.inner.put(key, data), writeDeadlineMs(this.deadlines, data.length), `put ${key}`);
  }

  delete(key: string): Promise<void> {
    return this.bound(this.inner.delete(key), this.deadlines.readMs, `delete ${key}`);
  }

  async *list(prefix: string): AsyncIterable<string> {
    const it = this.inner.list(prefix)[Symbol.asyncIterator]();
    for (;;) {
      const next = await this.bound(it.next(), this.deadlines.readMs, `list ${prefix}`);
      if (next.done) return;
      yield next.value;
    }
  }

  ping(): Promise<void> {
    return this.bound(this.inner.ping(), this.deadlines.readMs, 'ping');
  }

  describe(): string {
    return this.inner.describe();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export function timedOut(where: string, what: string, ms: number): UnavailableError {
  return new UnavailableError(`${where}: ${what} timed out after ${ms} ms (the store is not answering)`);
}
