/**
 * One layer of a chunk cache in the form it is stored in: the object's bytes after their checksum passed,
 * viewed as typed arrays, never widened on the host. A device engine uploads these views as they are and
 * widens, dequantizes and transposes on the GPU; a host engine widens them with `widenStoredLayer`.
 *
 * Every array is token-major: values [tokens, kvHeads, headDim]; scales [tokens, kvHeads] (fp16 bits).
 */
export type StoredKvLayer =
  | { dtype: 'float32'; k: Float32Array; v: Float32Array }
  | { dtype: 'float16'; k: Uint16Array; v: Uint16Array }
  /** Symmetric int8: x ≈ q × scale, one scale per token and KV head. */
  | { dtype: 'int8'; k: Int8Array; v: Int8Array; kScale: Uint16Array; vScale: Uint16Array };

/** Bytes of a stored layer's arrays: what crosses to the device. */
export function storedLayerBytes(s: StoredKvLayer): number {
  const scales = s.dtype === 'int8' ? s.kScale.byteLength + s.vScale.byteLength : 0;
  return s.k.byteLength + s.v.byteLength + scales;
}
