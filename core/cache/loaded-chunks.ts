/**
 * The chunk caches a query opens through TieredChunkLoader: a GPU-tier hit, a whole object in memory (an
 * LRU hit, or just computed), and one read layer by layer from the disk cache or the store. A bad layer is
 * handed back to the loader (layerFailed), which replaces the whole chunk.
 */
import type { ChunkKvSource } from '../blend/index.js';
import { CacheBlendError, KvFormatError } from '../errors.js';
import {
  decodeKvHeader,
  decodeStoredKvLayer,
  layerByteRange,
  totalBytes,
  widenStoredLayer,
  type KvHeader,
} from '../kv/format.js';
import type { StoredKvLayer } from '../kv/stored.js';
import type { DeviceChunk } from '../model/device/index.js';
import type { ObjectStore } from '../storage/types.js';
import type { TieredChunkLoader } from './tiered-loader.js';
import type { CacheStats, CacheTier } from './types.js';

/** A chunk cache opened for one query. */
export interface LoadedChunk extends ChunkKvSource {
  readonly key: string;
  /** Where the object was found; 'computed' for a miss. */
  readonly tier: CacheTier | 'computed';
  storedLayer(l: number): Promise<StoredKvLayer>;
  /**
   * Read the layers the query did not need (so the whole object can enter the LRU and disk cache) and
   * resolve once every tier that should hold it does. Call after the answer is ready.
   */
  complete(): Promise<void>;
  /** The whole validated object; only after complete(). */
  bytes(): Buffer;
  /** Set when a GPU tier would keep the engine's upload of this chunk. */
  keepOnDevice?: (chunk: DeviceChunk) => void;
}

export /**
 * A GPU-tier hit: the engine reads the chunk from GPU memory, so nothing is read here unless a layer is
 * asked for anyway (then the host tiers are opened, once).
 */
class DeviceResidentChunk implements LoadedChunk {
  readonly tier = 'gpu' as const;
  private below: Promise<LoadedChunk> | null = null;

  constructor(
    readonly key: string,
    readonly tokenIds: readonly number[],
    readonly device: DeviceChunk,
    private readonly openBelow: () => Promise<LoadedChunk>,
  ) {}

  async layer(l: number): Promise<{ k: Float32Array; v: Float32Array }> {
    return widenStoredLayer(await this.storedLayer(l));
  }

  async storedLayer(l: number): Promise<StoredKvLayer> {
    this.below ??= this.openBelow();
    return (await this.below).storedLayer(l);
  }

  async complete(): Promise<void> {
    if (this.below) await (await this.below).complete();
  }

  bytes(): Buffer {
    throw new Error('a GPU-tier chunk has no host copy here; read it with loadObject');
  }
}

/** Layer l of a whole object; `verified`: its layers passed their checksums when it entered memory. */
function decodeFrom(buf: Buffer, header: KvHeader, l: number, verified = false): StoredKvLayer {
  const [s, e] = layerByteRange(header, l);
  return decodeStoredKvLayer(header, l, buf.subarray(s, e), verified);
}

/** A chunk whose whole object is in memory (LRU hit, or just computed). */
export class BufferChunk implements LoadedChunk {
  private replacement: Promise<Buffer> | null = null;

  constructor(
    private readonly loader: TieredChunkLoader,
    readonly key: string,
    readonly tokenIds: readonly number[],
    readonly tier: CacheTier | 'computed',
    private buf: Buffer,
    private header: KvHeader,
    private readonly stats: CacheStats,
  ) {}

  async layer(l: number): Promise<{ k: Float32Array; v: Float32Array }> {
    return widenStoredLayer(await this.storedLayer(l));
  }

  /** Every whole object in memory was validated on its way in (TieredChunkLoader.remember): no checksums. */
  async storedLayer(l: number): Promise<StoredKvLayer> {
    if (this.replacement) return decodeFrom(await this.replacement, this.header, l, true);
    try {
      return decodeFrom(this.buf, this.header, l, true);
    } catch (err) {
      if (!(err instanceof CacheBlendError) || this.tier === 'computed') throw err;
      this.loader.lru.delete(this.key);
      this.replacement ??= this.loader.layerFailed(this.key, this.tokenIds, this.tier, l, err, this.stats);
      this.buf = await this.replacement;
      this.header = decodeKvHeader(this.buf);
      return decodeFrom(this.buf, this.header, l, true);
    }
  }

  async complete(): Promise<void> {
    if (this.replacement) this.buf = await this.replacement;
  }

  bytes(): Buffer {
    return this.buf;
  }
}

/** A chunk read from the disk cache or the store, one layer's byte range at a time. */
export class RangedChunk implements LoadedChunk {
  /** Each layer's bytes as read, joined into one object only in complete(), after the answer. */
  private readonly read: (Buffer | null)[];
  private assembled: Buffer | null = null;
  private readonly probe: Buffer;
  private replacement: Promise<Buffer> | null = null;
  private replaced: Buffer | null = null;

  constructor(
    private readonly loader: TieredChunkLoader,
    readonly key: string,
    readonly tokenIds: readonly number[],
    readonly tier: CacheTier,
    private readonly reader: ObjectStore,
    private readonly objKey: string,
    private readonly header: KvHeader,
    probe: Buffer,
    private readonly stats: CacheStats,
  ) {
    this.probe = probe.subarray(0, header.headerBytes);
    this.read = new Array<Buffer | null>(header.numLayers).fill(null);
  }

  async layer(l: number): Promise<{ k: Float32Array; v: Float32Array }> {
    return widenStoredLayer(await this.storedLayer(l));
  }

  async storedLayer(l: number): Promise<StoredKvLayer> {
    if (this.replacement) return this.fromReplacement(l);
    try {
      const [s, e] = layerByteRange(this.header, l);
      const t0 = performance.now();
      const bytes = await this.reader.getRange(this.objKey, s, e);
      if (bytes === null) throw new KvFormatError('object disappeared while being read');
      this.loader.observeLoad(bytes.length, performance.now() - t0, this.tier);
      const decoded = decodeStoredKvLayer(this.header, l, bytes);
      if (!this.replacement) {
        this.read[l] = bytes;
        this.stats.bytesLoaded[this.tier] += bytes.length;
      }
      return decoded;
    } catch (err) {
      this.replacement ??= this.loader.layerFailed(this.key, this.tokenIds, this.tier, l, err, this.stats);
      return this.fromReplacement(l);
    }
  }

  private async fromReplacement(l: number): Promise<StoredKvLayer> {
    this.replaced = await this.replacement!;
    return decodeFrom(this.replaced, decodeKvHeader(this.replaced), l);
  }

  async complete(): Promise<void> {
    if (!this.replacement) {
      for (let l = 0; l < this.header.numLayers; l++) if (!this.read[l]) await this.layer(l);
    }
    if (this.replacement) {
      this.replaced = await this.replacement;
      return;
    }
    this.assembled = Buffer.concat([this.probe, ...this.read.map((b) => b!)], totalBytes(this.header));
    await this.loader.remember(this.key, this.assembled, this.tier === 'store');
  }

  bytes(): Buffer {
    if (this.replaced) return this.replaced;
    if (!this.assembled) throw new Error('bytes() before complete()');
    return this.assembled;
  }
}
