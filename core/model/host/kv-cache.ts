/**
 * A growable per-layer K/V cache in the layout the layer graphs consume: token-major rows of
 * [kvHeads, headDim], so the first `length` rows of a layer are one contiguous range handed to
 * onnxruntime without copying. `positions[i]` is the RoPE position row i's key is rotated at.
 */
export class KvCache {
  readonly rowSize: number;
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  positions: Int32Array;
  length = 0;
  private capacity: number;

  constructor(
    readonly numLayers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    initialCapacity = 64,
  ) {
    this.rowSize = kvHeads * headDim;
    this.capacity = Math.max(1, initialCapacity);
    this.keys = Array.from({ length: numLayers }, () => new Float32Array(this.capacity * this.rowSize));
    this.values = Array.from({ length: numLayers }, () => new Float32Array(this.capacity * this.rowSize));
    this.positions = new Int32Array(this.capacity);
  }

  /** Make room for `extra` more rows, doubling so appends stay amortized O(1). */
  reserve(extra: number): void {
    const need = this.length + extra;
    if (need <= this.capacity) return;
    let cap = this.capacity;
    while (cap < need) cap *= 2;
    for (let l = 0; l < this.numLayers; l++) {
      const k = new Float32Array(cap * this.rowSize);
      k.set(this.keys[l].subarray(0, this.length * this.rowSize));
      this.keys[l] = k;
      const v = new Float32Array(cap * this.rowSize);
      v.set(this.values[l].subarray(0, this.length * this.rowSize));
      this.values[l] = v;
    }
    const p = new Int32Array(cap);
    p.set(this.positions.subarray(0, this.length));
    this.positions = p;
    this.capacity = cap;
  }

  pastKeys(layer: number): Float32Array {
    return this.keys[layer].subarray(0, this.length * this.rowSize);
  }

  pastValues(layer: number): Float32Array {
    return this.values[layer].subarray(0, this.length * this.rowSize);
  }

  /** Write rows [start, start + n) of one layer (n from k's length); the caller reserved the space. */
  writeRows(layer: number, start: number, k: Float32Array, v: Float32Array): void {
    this.keys[layer].set(k, start * this.rowSize);
    this.values[layer].set(v, start * this.rowSize);
  }

  /** Overwrite scattered rows: row indices[i] gets the i-th row of k and v. */
  writeRowsAt(layer: number, indices: ArrayLike<number>, k: Float32Array, v: Float32Array): void {
    const r = this.rowSize;
    for (let i = 0; i < indices.length; i++) {
      this.keys[layer].set(k.subarray(i * r, (i + 1) * r), indices[i] * r);
      this.values[layer].set(v.subarray(i * r, (i + 1) * r), indices[i] * r);
    }
  }

  /** Append rows already written at [length, length + n) by declaring their positions. */
  commit(positions: ArrayLike<number>): void {
    this.reserve(positions.length);
    this.positions.set(positions, this.length);
    this.length += positions.length;
  }

  /** Append whole rows for every layer at once (e.g. a chunk's precomputed cache). */
  appendAll(k: Float32Array[], v: Float32Array[], positions: ArrayLike<number>): void {
    this.reserve(positions.length);
    for (let l = 0; l < this.numLayers; l++) this.writeRows(l, this.length, k[l], v[l]);
    this.commit(positions);
  }
}
