import type { StoredKvLayer } from '../kv/stored.js';
import type { ChunkKvSource } from './types.js';

/** Layers read ahead of the one being uploaded: their bytes arrive while earlier layers compute. */
export const READ_AHEAD_LAYERS = 8;

/** A source's layer in its stored form (a source without one hands over fp32). */
function stored(c: ChunkKvSource, l: number): Promise<StoredKvLayer> {
  if (c.storedLayer) return c.storedLayer(l);
  return c.layer(l).then(({ k, v }) => ({ dtype: 'float32', k, v }));
}

/**
 * Reads the stored layers of a request's chunks that are not on the device, in layer order, a window
 * ahead of use: `take(l)` waits for layer l of every such chunk (and asks for the layers after it).
 * Each layer is read once; what was read and not taken is dropped with the reader.
 */
export class StoredLayerReader {
  /** Time spent waiting for layers that had not arrived when they were taken. */
  waitedMs = 0;
  private readonly pending = new Map<number, Promise<StoredKvLayer[]>>();

  constructor(
    private readonly sources: readonly ChunkKvSource[],
    private readonly numLayers: number,
  ) {}

  private request(l: number): Promise<StoredKvLayer[]> {
    let p = this.pending.get(l);
    if (!p) {
      p = Promise.all(this.sources.map((c) => stored(c, l)));
      p.catch(() => undefined); // observed when taken; no unhandled rejection meanwhile
      this.pending.set(l, p);
    }
    return p;
  }

  /** Start reading layers [from, to) (at most the window past `from`). */
  readAhead(from: number, to = from + READ_AHEAD_LAYERS): void {
    for (let l = from; l < Math.min(to, this.numLayers); l++) this.request(l);
  }

  /** Layers [from, from + count) of every source: result[j][i] is layer from + j of source i. */
  async take(from: number, count: number): Promise<StoredKvLayer[][]> {
    this.readAhead(from, from + count + READ_AHEAD_LAYERS);
    const t0 = performance.now();
    try {
      return await Promise.all(Array.from({ length: count }, (_, j) => this.request(from + j)));
    } finally {
      this.waitedMs += performance.now() - t0;
      for (let j = 0; j < count; j++) this.pending.delete(from + j);
    }
  }
}
