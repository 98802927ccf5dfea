import { InvalidArgumentError } from '../errors.js';

export interface ByteLruOptions<K, V> {
  /** Capacity in bytes (as measured by `sizeOf`); 0 stores nothing. */
  maxBytes: number;
  /** Size of a value in bytes; must be a finite number >= 0. Called once per `set`. */
  sizeOf: (value: V, key: K) => number;
  /** Called for each entry pushed out to make room (not for `delete`, `clear` or overwrites). */
  onEvict?: (key: K, value: V, size: number) => void;
}

/**
 * A map bounded by the total byte size of its values, evicting least recently used entries first. `get`
 * and `set` count as uses; `peek` and `has` do not. Built on Map insertion order, so every operation is
 * O(1) apart from the evictions a `set` causes.
 */
export class ByteLru<K, V> {
  readonly maxBytes: number;
  private readonly sizeOf: (value: V, key: K) => number;
  private readonly onEvict: ((key: K, value: V, size: number) => void) | undefined;
  private readonly entries = new Map<K, { value: V; size: number }>();
  private used = 0;

  constructor(options: ByteLruOptions<K, V>) {
    if (!Number.isFinite(options.maxBytes) || options.maxBytes < 0) {
      throw new InvalidArgumentError(`LRU maxBytes must be a finite number >= 0, got ${options.maxBytes}`);
    }
    this.maxBytes = options.maxBytes;
    this.sizeOf = options.sizeOf;
    this.onEvict = options.onEvict;
  }

  /** Total size of the stored values. */
  get bytes(): number {
    return this.used;
  }

  /** Number of entries. */
  get size(): number {
    return this.entries.size;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** The value, marking it most recently used. */
  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  /** The value without touching its recency. */
  peek(key: K): V | undefined {
    return this.entries.get(key)?.value;
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
    this.delete(key);
    if (size > this.maxBytes) return false;
    while (this.used + size > this.maxBytes) {
      const oldest = this.entries.entries().next();
      if (oldest.done) break;
      const [oldKey, entry] = oldest.value;
      this.entries.delete(oldKey);
      this.used -= entry.size;
      this.onEvict?.(oldKey, entry.value, entry.size);
    }
    this.entries.set(key, { value, size });
    this.used += size;
    return true;
  }

  delete(key: K): boolean {
    const entry = this.entries.get(key);
    if (!entry) return false;
    this.entries.delete(key);
    this.used -= entry.size;
    return true;
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }

  /** Keys from least to most recently used. */
  keys(): IterableIterator<K> {
    return this.entries.keys();
  }
}
