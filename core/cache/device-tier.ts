/**
 * The GPU tier in front of the RAM LRU: chunk caches stay in GPU memory (bounded in bytes), so a repeated
 * query uploads nothing. Entries are `DeviceChunk`s of one device-resident engine; the tier holds one
 * reference to each and releases it on eviction.
 *
 * Segmented LRU: a chunk enters on probation and is protected once used again. Eviction takes the least
 * recently used chunk on probation first, so a burst of chunks seen once (a stream of new documents)
 * cycles through probation while the chunks queries keep coming back to stay; protected chunks fill at
 * most PROTECTED_SHARE of the bytes, the least recently used of them going back on probation past it.
 */
import type { DeviceChunk } from '../model/device/index.js';

export const PROTECTED_SHARE = 0.8;

export class DeviceChunkTier {
  /** Insertion order is recency order: the first entry is the least recently used. */
  private readonly probation = new Map<string, DeviceChunk>();
  private readonly protected = new Map<string, DeviceChunk>();
  private used = 0;
  private protectedBytes = 0;

  constructor(readonly maxBytes: number) {}

  /** The chunk, marked recently used (no new reference: a user retains it while it reads it). */
  get(key: string): DeviceChunk | undefined {
    const hot = this.protected.get(key);
    if (hot) {
      this.protected.delete(key);
      this.protected.set(key, hot);
      return hot;
    }
    const seen = this.probation.get(key);
    if (!seen) return undefined;
    this.probation.delete(key);
    this.protected.set(key, seen);
    this.protectedBytes += seen.bytes;
    this.demote();
    return seen;
  }

  /** Keep a fresh upload; the tier takes its own reference. Too large for the tier: not kept. */
  put(key: string, chunk: DeviceChunk): void {
    const old = this.protected.get(key) ?? this.probation.get(key);
    if (old === chunk) return;
    if (old) this.remove(key);
    if (chunk.bytes > this.maxBytes) return;
    this.probation.set(key, chunk.retain());
    this.used += chunk.bytes;
    this.evict();
  }

  /** Protected chunks past their share go back on probation, least recently used first. */
  private demote(): void {
    for (const [key, c] of this.protected) {
      if (this.protectedBytes <= PROTECTED_SHARE * this.maxBytes) break;
      this.protected.delete(key);
      this.protectedBytes -= c.bytes;
      this.probation.set(key, c);
    }
  }

  private evict(): void {
    while (this.used > this.maxBytes) {
      const [key] = this.probation.size ? this.probation.keys() : this.protected.keys();
      this.remove(key);
    }
  }

  private remove(key: string): void {
    const c = this.protected.get(key) ?? this.probation.get(key)!;
    if (this.protected.delete(key)) this.protectedBytes -= c.bytes;
    else this.probation.delete(key);
    this.used -= c.bytes;
    c.release();
  }

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.probation.size + this.protected.size;
  }

  clear(): void {
    for (const key of [...this.probation.keys(), ...this.protected.keys()]) this.remove(key);
  }
}
