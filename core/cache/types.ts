/** What a query learns about where its chunk caches came from. */

/** 'gpu': the GPU tier of a device-resident engine (nothing read or uploaded). */
export type CacheTier = 'gpu' | 'lru' | 'disk' | 'store';

export interface CacheStats {
  /** Chunk caches found in each tier. */
  hits: Record<CacheTier, number>;
  /** Chunk caches found nowhere usable, computed (and stored) during the query. */
  misses: number;
  /**
   * Chunk caches found corrupt or truncated in some tier and logged; each is also counted where its
   * replacement came from: a store hit (a bad disk copy) or a miss (recomputed and rewritten).
   */
  corrupt: number;
  /** Bytes read from each tier. */
  bytesLoaded: Record<CacheTier, number>;
}

export function emptyCacheStats(): CacheStats {
  return {
    hits: { gpu: 0, lru: 0, disk: 0, store: 0 },
    misses: 0,
    corrupt: 0,
    bytesLoaded: { gpu: 0, lru: 0, disk: 0, store: 0 },
  };
}
