/**
 * A document's manifest: the durable record of what a document is made of, stored in the object store
 * next to the chunk caches (`docs/<id>.json`). Redis holds the live bookkeeping (status, references);
 * the manifest lets an operator see, back up or rebuild a document without Redis.
 */
import { z } from 'zod';
import { InvalidArgumentError } from '../errors.js';

/** Document ids: 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit. */
export const DOCUMENT_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const documentIdSchema = z
  .string()
  .regex(DOCUMENT_ID_RE, 'must be 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit');

export interface ManifestChunk {
  key: string;
  text: string;
  tokenIds: number[];
}

export interface DocumentManifest {
  version: 1;
  id: string;
  /** Model fingerprint the chunk keys belong to. */
  fingerprint: string;
  createdAt: string;
  updatedAt: string;
  metadata: Record<string, unknown>;
  chunks: ManifestChunk[];
}

export function manifestObjectKey(id: string): string {
  if (!DOCUMENT_ID_RE.test(id)) throw new InvalidArgumentError(`invalid document id ${JSON.stringify(id)}`);
  return `docs/${id}.json`;
}

export function encodeManifest(m: DocumentManifest): Buffer {
  return Buffer.from(`${JSON.stringify(m)}\n`);
}

export function decodeManifest(buf: Buffer): DocumentManifest {
  return JSON.parse(buf.toString('utf8')) as DocumentManifest;
}
