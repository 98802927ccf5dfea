/**
 * The tiered chunk-cache loader: an in-process LRU (bounded in bytes, whole encoded objects), then a local
 * disk cache directory, then the object store. Disk and store objects are read layer by layer: a header
 * probe with getRange, then each layer's byte range (`layerByteRange`) validated by `decodeKvLayer`, so
 * `blendPrefill` can prefetch layer l+1 while it computes layer l.
 *
 * Nothing invalid ever reaches the model: a missing object is computed (and stored); a corrupt,
 * truncated or mismatched one is logged, counted as a miss and replaced — from the store when the bad copy
 * was the disk cache's, otherwise recomputed and rewritten. A layer that fails its checksum after earlier
 * layers were served is replaced the same way; the earlier layers passed their checksums, so they are the
 * same bytes the replacement holds.
 */
import { KvFormatError, KvMismatchError, errorMessage } from '../errors.js';
import { chunkObjectKey, decodeChunkKv, decodeKvHeader, type KvDtype } from '../kv/format.js';
import {
  checkedHeader,
  probeChunkObject,
  type ChunkObjectExpectation,
  type ProbedObject,
} from './chunk-object.js';
import type { DeviceChunkTier } from './device-tier.js';
import { BufferChunk, DeviceResidentChunk, RangedChunk, type LoadedChunk } from './loaded-chunks.js';
import type { CacheStats, CacheTier } from './types.js';
import { ByteLru } from '../storage/lru.js';
import type { ObjectStore } from '../storage/types.js';
import { silentLogger, type Logger } from '../ops/log.js';

export interface ChunkLoaderOptions {
  store: ObjectStore;
  /** Local disk cache (a file store); null disables the tier. */
  disk: ObjectStore | null;
  /** LRU capacity in bytes; 0 disables the tier. */
  lruBytes: number;
  fingerprint: string;
  numLayers: number;
  kvHeads: number;
  headDim: number;
  /**
   * The dtype computed chunks are stored in (KV_DTYPE). Objects at least as precise are served (an int8
   * loader serves fp16 objects); a coarser one (int8 for an fp16 loader) is a miss, recomputed and rewritten.
   */
  kvDtype: KvDtype;
  /** The encoded object of a chunk, computed now (a miss or a corrupt object). */
  compute(tokenIds: readonly number[]): Promise<Buffer>;
  /** Sees each layer read from the disk cache or the store: bytes and wall time (the loading controller). */
  onLayerLoad?: (bytes: number, ms: number, tier: CacheTier) => void;
  log?: Logger;
  /** The GPU tier of a device-resident engine, in front of the LRU; absent or null: none. */
  deviceTier?: DeviceChunkTier | null;
  /**
   * Writes a computed object to the store: in the service a ChunkWriteGate (under the chunk's lock, only
   * while a document references it); absent: a plain put.
   */
  writeToStore?: (key: string, objKey: string, buf: Buffer) => Promise<unknown>;
}

export type { LoadedChunk } from './loaded-chunks.js';

export class TieredChunkLoader {
  readonly lru: ByteLru<string, Buffer>;
  private readonly log: Logger;
  private readonly writes = new Set<Promise<void>>();

  constructor(private readonly opts: ChunkLoaderOptions) {
    this.lru = new ByteLru<string, Buffer>({ maxBytes: opts.lruBytes, sizeOf: (b) => b.length });
    this.log = opts.log ?? silentLogger;
  }

  /** Report a layer read from disk or the store to whoever learns load speeds. */
  observeLoad(bytes: number, ms: number, tier: CacheTier): void {
    this.opts.onLayerLoad?.(bytes, ms, tier);
  }

  objectKey(key: string): string {
    return chunkObjectKey(this.opts.fingerprint, key);
  }

  private expectation(tokenIds: readonly number[]): ChunkObjectExpectation {
    const { fingerprint, numLayers, kvHeads, headDim, kvDtype } = this.opts;
    return { fingerprint, tokenIds, numLayers, kvHeads, headDim, kvDtype };
  }

  /**
   * Open a chunk's cache through the tiers; never throws for a missing or bad object (it computes one).
   * With a GPU tier, a chunk found there is read from nowhere else; one found below it is offered to it
   * once the engine has uploaded it.
   */
  async open(key: string, tokenIds: readonly number[], stats: CacheStats): Promise<LoadedChunk> {
    const gpu = this.opts.deviceTier;
    const resident = gpu?.get(key);
    if (resident) {
      stats.hits.gpu++;
      return new DeviceResidentChunk(key, tokenIds, resident, () => this.openBelowGpu(key, tokenIds, stats));
    }
    const chunk = await this.openBelowGpu(key, tokenIds, stats);
    if (gpu) chunk.keepOnDevice = (c) => gpu.put(key, c);
    return chunk;
  }

  /** Open through the host tiers: LRU, disk, store, else compute. */
  private async openBelowGpu(
    key: string,
    tokenIds: readonly number[],
    stats: CacheStats,
  ): Promise<LoadedChunk> {
    const fromLru = this.openFromLru(key, tokenIds, stats);
    if (fromLru) return fromLru;
    const tiers: [CacheTier, ObjectStore | null][] = [
      ['disk', this.opts.disk],
      ['store', this.opts.store],
    ];
    for (const [tier, reader] of tiers) {
      const opened = reader && (await this.openFromTier(tier, reader, key, tokenIds, stats));
      if (opened) return opened;
    }
    stats.misses++;
    this.log.debug('chunk cache miss: computing', { key, tokens: tokenIds.length });
    const buf = await this.computeAndStore(key, tokenIds, true);
    return new BufferChunk(this, key, tokenIds, 'computed', buf, decodeKvHeader(buf), stats);
  }

  private openFromLru(key: string, tokenIds: readonly number[], stats: CacheStats): LoadedChunk | null {
    const cached = this.lru.get(key);
    if (!cached) return null;
    try {
      const header = checkedHeader(cached, this.expectation(tokenIds));
      stats.hits.lru++;
      stats.bytesLoaded.lru += cached.length;
      return new BufferChunk(this, key, tokenIds, 'lru', cached, header, stats);
    } catch (err) {
      this.lru.delete(key);
      this.log.warn('dropping an invalid LRU entry', { key, error: errorMessage(err) });
      return null;
    }
  }

  /**
   * A chunk read layer by layer from a disk or store tier. Null when the tier lacks it or cannot be read
   * (the next tier is tried); a corrupt object there is replaced (see recover).
   */
  private async openFromTier(
    tier: CacheTier,
    reader: ObjectStore,
    key: string,
    tokenIds: readonly number[],
    stats: CacheStats,
  ): Promise<LoadedChunk | null> {
    const objKey = this.objectKey(key);
    let probed: ProbedObject | null;
    try {
      probed = await probeChunkObject(reader, objKey, this.expectation(tokenIds));
    } catch (err) {
      if (!(err instanceof KvFormatError || err instanceof KvMismatchError)) {
        this.log.warn(`chunk cache ${tier} read failed; trying the next tier`, {
          key,
          error: errorMessage(err),
        });
        return null;
      }
      stats.corrupt++;
      this.log.warn(`corrupt chunk cache in ${tier}: treated as a miss`, { key, error: errorMessage(err) });
      const fixed = await this.recover(key, tokenIds, tier, stats);
      return new BufferChunk(this, key, tokenIds, fixed.tier, fixed.buf, decodeKvHeader(fixed.buf), stats);
    }
    if (!probed) return null;
    stats.hits[tier]++;
    stats.bytesLoaded[tier] += probed.probe.length;
    return new RangedChunk(this, key, tokenIds, tier, reader, objKey, probed.header, probed.probe, stats);
  }

  /** The whole validated object of a chunk, through the host tiers (tests and tools). */
  async loadObject(key: string, tokenIds: readonly number[], stats: CacheStats): Promise<Buffer> {
    const chunk = await this.openBelowGpu(key, tokenIds, stats);
    await chunk.complete();
    await this.flush();
    return chunk.bytes();
  }

  /**
   * Compute a chunk, write it to the LRU, the disk cache and (when `toStore`) the store. The store write
   * runs in the background, like the disk write: the answer never waits on a slow store (`flush()` does).
   */
  async computeAndStore(key: string, tokenIds: readonly number[], toStore: boolean): Promise<Buffer> {
    const buf = await this.opts.compute(tokenIds);
    if (toStore) {
      const objKey = this.objectKey(key);
      const { store, writeToStore } = this.opts;
      this.background(
        (writeToStore ? writeToStore(key, objKey, buf) : store.put(objKey, buf)).then(() => undefined),
        'could not write a computed chunk cache to the store',
        key,
      );
    }
    await this.remember(key, buf, true);
    return buf;
  }

  /** Track a write that nobody awaits now (flush() does); failures are logged. */
  private background(write: Promise<void>, failure: string, key: string): void {
    const tracked: Promise<void> = write
      .catch((err: unknown) => this.log.warn(failure, { key, error: errorMessage(err) }))
      .finally(() => this.writes.delete(tracked));
    this.writes.add(tracked);
  }

  /**
   * Replace a bad copy found in `tier`: a bad disk or LRU copy from the store if the store's is valid (a
   * store hit), anything else by recomputing and rewriting the store (a miss).
   */
  async recover(
    key: string,
    tokenIds: readonly number[],
    tier: CacheTier,
    stats: CacheStats,
  ): Promise<{ buf: Buffer; tier: 'store' | 'computed' }> {
    const objKey = this.objectKey(key);
    if (tier === 'disk' && this.opts.disk) await this.opts.disk.delete(objKey).catch(() => undefined);
    if (tier !== 'store') {
      try {
        const whole = await this.opts.store.get(objKey);
        if (whole) {
          decodeChunkKv(whole, this.expectation(tokenIds));
          stats.hits.store++;
          stats.bytesLoaded.store += whole.length;
          await this.remember(key, whole, true);
          return { buf: whole, tier: 'store' };
        }
      } catch (err) {
        this.log.warn('store copy unusable too; recomputing', { key, error: errorMessage(err) });
      }
    }
    stats.misses++;
    return { buf: await this.computeAndStore(key, tokenIds, true), tier: 'computed' };
  }

  /**
   * Put a validated whole object into the LRU and (optionally) the disk cache. The disk write runs in the
   * background (it fsyncs); `flush()` waits for pending ones.
   */
  async remember(key: string, buf: Buffer, toDisk: boolean): Promise<void> {
    this.lru.set(key, buf);
    if (toDisk && this.opts.disk) {
      this.background(this.opts.disk.put(this.objectKey(key), buf), 'could not write the disk cache', key);
    }
  }

  /** Resolves once every disk-cache and store write started so far has finished. */
  async flush(): Promise<void> {
    await Promise.all([...this.writes]);
  }

  /** A bad layer after a hit: the hit is withdrawn and the chunk replaced (see recover). */
  async layerFailed(
    key: string,
    tokenIds: readonly number[],
    tier: CacheTier,
    layer: number,
    err: unknown,
    stats: CacheStats,
  ): Promise<Buffer> {
    stats.hits[tier]--;
    const corrupt = err instanceof KvFormatError || err instanceof KvMismatchError;
    if (corrupt) stats.corrupt++;
    this.log.warn(`${corrupt ? 'corrupt' : 'unreadable'} chunk cache in ${tier}: treated as a miss`, {
      key,
      layer,
      error: errorMessage(err),
    });
    return (await this.recover(key, tokenIds, tier, stats)).buf;
  }
}
