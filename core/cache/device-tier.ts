/**
 * The GPU tier in front of the RAM LRU: chunk caches used recently stay in GPU memory (bounded in bytes,
 * least recently used out first), so a repeated query uploads nothing. Entries are `DeviceChunk`s of one
 * device-resident engine; the tier holds one reference to each and releases it on eviction.
 */
import type { DeviceChunk } from '../model/device/index.js';
import { ByteLru } from '../storage/lru.js';

export class DeviceChunkTier {
  private readonly lru: ByteLru<string, DeviceChunk>;

  constructor(readonly maxBytes: number) {
    this.lru = new ByteLru<string, DeviceChunk>({
      maxBytes,
      sizeOf: (c) => c.bytes,
      onEvict: (_key, c) => c.release(),
    });
  }

  /** The chunk, marked recently used (no new reference: a user retains it while it reads it). */
  get(key: string): DeviceChunk | undefined {
    return this.lru.get(key);
  }

  /** Keep a fresh upload; the tier takes its own reference. Too large for the tier: not kept. */
  put(key: string, chunk: DeviceChunk): void {
    const old = this.lru.peek(key);
    if (old === chunk) return;
    // Stored or not, the old entry under the key is gone from the tier (a refused set removes it too).
    const kept = this.lru.set(key, chunk.retain());
    old?.release();
    if (!kept) chunk.release();
  }

  get bytes(): number {
    return this.lru.bytes;
  }

  get size(): number {
    return this.lru.size;
  }

  clear(): void {
    for (const key of [...this.lru.keys()]) this.lru.peek(key)?.release();
    this.lru.clear();
  }
}
