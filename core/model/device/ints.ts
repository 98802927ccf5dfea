import ort from 'onnxruntime-node';
import type { SelectiveAttention } from './graphs/index.js';

export type Feeds = Record<string, ort.Tensor>;

export const int64 = (a: ArrayLike<number>, dims = [a.length]) =>
  new ort.Tensor('int64', BigInt64Array.from(Array.from(a, (x) => BigInt(x))), dims);
export const range = (from: number, to: number) => Int32Array.from({ length: to - from }, (_, i) => from + i);

export type Ints = Record<string, ArrayLike<number>>;

/** The packed integer input of a stack (see intSegments): one int32 tensor and its segment sizes. */
export function packInts(segs: readonly string[], values: Ints): Feeds {
  const sizes = segs.map((name) => {
    if (!values[name]) throw new Error(`device run: no values for ${name}`);
    return values[name].length;
  });
  const all = new Int32Array(sizes.reduce((a, b) => a + b, 0));
  let at = 0;
  segs.forEach((name, i) => {
    all.set(values[name], at);
    at += sizes[i];
  });
  return {
    ints: new ort.Tensor('int32', all, [all.length]),
    int_sizes: int64(sizes),
  };
}

/**
 * What blend's selective layers need about the `active` prompt positions in a cache of `rows` rows: which
 * rows they replace and from which new row (row_new, row_src; for GroupQueryAttention the new rows follow
 * the cache's in its present output, so the index is rows + i), the keys' positions (k_pos: the cache's;
 * key_pos/key_hidden: the cache's then the new rows', with the replaced rows hidden).
 */
export function selectiveInts(active: ArrayLike<number>, rows: number, selective: SelectiveAttention): Ints {
  const A = active.length;
  const isNew = new Int32Array(rows);
  const src = new Int32Array(rows);
  const offset = selective === 'gqa' ? rows : 0;
  for (let i = 0; i < A; i++) {
    isNew[active[i]] = 1;
    src[active[i]] = offset + i;
  }
  const keyPos = new Int32Array(rows + A);
  keyPos.set(range(0, rows));
  keyPos.set(active, rows);
  const keyHidden = new Int32Array(rows + A);
  keyHidden.set(isNew);
  return {
    q_pos: active,
    row_new: isNew,
    row_src: src,
    k_pos: range(0, rows),
    key_pos: keyPos,
    key_hidden: keyHidden,
  };
}
