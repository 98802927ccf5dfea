import ort from 'onnxruntime-node';

/** A sequence's KV cache on the device: per layer [1, length, kvHeads, headDim]. */
export class DeviceKvCache {
  constructor(
    public k: ort.Tensor[] = [],
    public v: ort.Tensor[] = [],
    public length = 0,
  ) {}

  /** Take new per-layer tensors (from a run), releasing the ones they replace. */
  replace(k: ort.Tensor[], v: ort.Tensor[], length: number): void {
    const keep = new Set([...k, ...v]);
    for (const t of [...this.k, ...this.v]) if (!keep.has(t)) t.dispose();
    this.k = k;
    this.v = v;
    this.length = length;
  }

  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
    this.k = [];
    this.v = [];
    this.length = 0;
  }
}

/**
 * One chunk's cache on the device: per layer K and V [kvHeads, tokens, headDim], keys at positions 1…n.
 * Reference-counted: whoever uploads it holds one reference, a GPU tier that keeps it another, a request
 * using it a third; the buffers are released with the last.
 */
export class DeviceChunk {
  private refs = 1;

  constructor(
    readonly k: readonly ort.Tensor[],
    readonly v: readonly ort.Tensor[],
    readonly tokens: number,
    readonly bytes: number,
  ) {}

  retain(): this {
    if (this.refs === 0) throw new Error('device chunk already released');
    this.refs++;
    return this;
  }

  /** A new reference, or false when the buffers are already gone (evicted meanwhile). */
  tryRetain(): boolean {
    if (this.refs === 0) return false;
    this.refs++;
    return true;
  }

  release(): void {
    if (this.refs === 0) return;
    if (--this.refs === 0) for (const t of [...this.k, ...this.v]) t.dispose();
  }
}

/**
 * Values of a cache on the host: fp32, or the fp16 bits a float16 device computed (a Uint16Array), which
 * an fp16 store keeps as they are.
 */
export type HostValues = Float32Array | Uint16Array;

/** Host K/V of one sequence: per layer [rows, kvHeads, headDim]. */
export interface HostRows {
  k: HostValues[];
  v: HostValues[];
}

/** Per-layer device tensors K and V (a cache's layers, or a stack's outputs). */
export interface DeviceLayers {
  k: ort.Tensor[];
  v: ort.Tensor[];
}
