import { LRUCache } from 'lru-cache';
import { InvalidArgumentError } from '../errors.js';

export interface ByteLruOptions<K, V> {
  /** Capacity in bytes (as measured by `sizeOf`); 0 stores nothing (but values of size 0). */
  maxBytes: number;
  /** Size of a value in bytes; must be a finite number >= 0. Called once per `set`. */
  sizeOf: (value: V, key: K) => number;
  /** Called for each entry pushed out to make room (not for `delete`, `clear` or overwrites). */
  onEvict?: (key: K, value: V, size: number) => void;
}

interface Entry<V> {
  value: V;
  size: number;
}

/**
 * A map bounded by the total byte size of its values, evicting least recently used entries first: `get`
 * and `set` count as uses; `peek` and `has` do not. The eviction order and bookkeeping are lru-cache's
 * (`maxSize` + `sizeCalculation`); this wrapper keeps the callers' shape — `set` says whether the value
 * was stored, `bytes` is the exact total of the sizes given, `onEvict` sees only evictions — and admits
 * sizes lru-cache refuses: 0 and fractions count as the next whole byte, at least 1, in its accounting.
 */
export class ByteLru<K extends NonNullable<unknown>, V> {
  readonly maxBytes: number;
  private readonly sizeOf: (value: V, key: K) => number;
  private readonly cache: LRUCache<K, Entry<V>>;
  private used = 0;

  constructor(options: ByteLruOptions<K, V>) {
    if (!Number.isFinite(options.maxBytes) || options.maxBytes < 0) {
      throw new InvalidArgumentError(`LRU maxBytes must be a finite number >= 0, got ${options.maxBytes}`);
    }
    this.maxBytes = options.maxBytes;
    this.sizeOf = options.sizeOf;
    const onEvict = options.onEvict;
    this.cache = new LRUCache<K, Entry<V>>({
      maxSize: Math.max(1, Math.floor(options.maxBytes)),
      sizeCalculation: (e) => Math.max(1, Math.ceil(e.size)),
      // Every way out of the cache (evicted, overwritten, deleted, cleared) passes here exactly once.
      dispose: (e, key, reason) => {
        this.used -= e.size;
        if (reason === 'evict') onEvict?.(key, e.value, e.size);
      },
    });
  }

  /** Total size of the stored values. */
  get bytes(): number {
    return this.used;
  }

  /** Number of entries. */
  get size(): number {
    return this.cache.size;
  }

  has(key: K): boolean {
    return this.cache.has(key);
  }

  /** The value, marking it most recently used. */
  get(key: K): V | undefined {
    return this.cache.get(key)?.value;
  }

  /** The value without touching its recency. */
  peek(key: K): V | undefined {
    return this.cache.peek(key)?.value;
  }

  /**
   * Stores the value as most recently used, evicting older entries until it fits. A value larger than
   * `maxBytes` is not stored (any previous value under the key is removed) and `false` is returned.
   */
  set(key: K, value: V): boolean {
    const size = this.sizeOf(value, key);
    if (!Number.isFinite(size) || size < 0) {
      throw new InvalidArgumentError(`LRU sizeOf returned ${size}; need a finite number >= 0`);
    }
    if (size > this.maxBytes) {
      this.cache.delete(key);
      return false;
    }
    this.cache.set(key, { value, size });
    this.used += size;
    return true;
  }

  delete(key: K): boolean {
    return this.cache.delete(key);
  }

  clear(): void {
    this.cache.clear();
  }

  /** Keys from least to most recently used. */
  keys(): IterableIterator<K> {
    return this.cache.rkeys();
  }
}
