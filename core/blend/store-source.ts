import { KvFormatError } from '../errors.js';
import {
  checkKvHeader,
  decodeKvHeader,
  decodeKvLayer,
  headerBytesFor,
  layerByteRange,
  type KvExpectation,
  type KvHeader,
} from '../kv/format.js';
import type { ObjectStore } from '../storage/types.js';
import type { ChunkKvSource } from './types.js';

export interface StoredChunkSource extends ChunkKvSource {
  readonly header: KvHeader;
  /** Bytes fetched so far (header and layers). */
  bytesLoaded(): number;
}

/**
 * A chunk cache read from an object store layer by layer: the header first (its size is known from the
 * expected token and layer counts), then each layer as its own byte range, validated by its checksum, so
 * a blend can start computing before the rest of the object has arrived. Returns null when the object
 * does not exist; throws KvFormatError / KvMismatchError for a defective or foreign one (a cache miss).
 */
export async function openStoredChunk(
  store: ObjectStore,
  key: string,
  expect: KvExpectation & { tokenIds: readonly number[]; numLayers: number },
): Promise<StoredChunkSource | null> {
  const headerBytes = headerBytesFor(expect.tokenIds.length, expect.numLayers);
  const head = await store.getRange(key, 0, headerBytes);
  if (head === null) return null;
  const header = decodeKvHeader(head);
  checkKvHeader(header, expect);
  let loaded = head.length;
  return {
    tokenIds: expect.tokenIds,
    header,
    bytesLoaded: () => loaded,
    async layer(l: number) {
      const [start, end] = layerByteRange(header, l);
      const bytes = await store.getRange(key, start, end);
      if (bytes === null) throw new KvFormatError(`${key}: object vanished while reading layer ${l}`);
      loaded += bytes.length;
      return decodeKvLayer(header, l, bytes);
    },
  };
}
