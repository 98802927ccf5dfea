/**
 * Checking a stored chunk object without reading it whole: its header is fetched with one ranged read and
 * checked against what the chunk must be (model fingerprint, token ids, shape). The tiered loader opens
 * objects this way; the precompute worker uses it to skip chunks already stored.
 */
import { KvFormatError } from '../errors.js';
import {
  checkKvHeader,
  decodeKvHeader,
  headerBytesFor,
  totalBytes,
  type KvExpectation,
  type KvHeader,
} from '../kv/format.js';
import type { ObjectStore } from '../storage/types.js';

/** What a stored chunk object must be: everything the header records. */
export type ChunkObjectExpectation = Required<KvExpectation>;

export interface ProbedObject {
  header: KvHeader;
  /** The bytes read: the header, perhaps followed by the start of layer 0. */
  probe: Buffer;
}

/**
 * Read and check an object's header. Null when there is no such object; KvFormatError or KvMismatchError
 * for a bad one; storage errors as the store raised them.
 */
export async function probeChunkObject(
  reader: ObjectStore,
  objKey: string,
  expect: ChunkObjectExpectation,
): Promise<ProbedObject | null> {
  const probe = await reader.getRange(objKey, 0, headerBytesFor(expect.tokenIds.length, expect.numLayers));
  if (probe === null) return null;
  return { header: checkedHeader(probe, expect), probe };
}

/** Decode and check a header; throws KvFormatError or KvMismatchError. */
export function checkedHeader(bytes: Buffer, expect: KvExpectation): KvHeader {
  const header = decodeKvHeader(bytes);
  checkKvHeader(header, expect);
  return header;
}

/**
 * The size of a complete, valid stored object: the header checks out and the object's size is the one
 * the header implies (a truncated upload is not). Null when there is no such object.
 */
export async function storedObjectSize(
  store: ObjectStore,
  objKey: string,
  expect: ChunkObjectExpectation,
): Promise<number | null> {
  const head = await store.head(objKey);
  if (!head) return null;
  const probed = await probeChunkObject(store, objKey, expect);
  if (!probed) return null;
  const expected = totalBytes(probed.header);
  if (head.size !== expected)
    throw new KvFormatError(`object is ${head.size} bytes, header says ${expected}`);
  return head.size;
}
