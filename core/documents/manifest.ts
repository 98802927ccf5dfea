/**
 * A document's manifest: the durable record of what a document is made of, stored in the object store
 * next to the chunk caches (`docs/<name>.json`, the name as in names.ts: `<tenant>/<id>` or `<id>`).
 * Redis holds the live bookkeeping (status, references); the manifest lets an operator see, back up or
 * rebuild a document without Redis (`cacheblend rebuild`).
 */
import { z } from 'zod';
import { InvalidArgumentError, KvFormatError } from '../errors.js';

/** Document ids: 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit. */
export const DOCUMENT_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const documentIdSchema = z
  .string()
  .regex(DOCUMENT_ID_RE, 'must be 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit');

/** A document's name: its id, or `<tenant>/<id>`. */
const DOCUMENT_NAME_RE = /^([A-Za-z0-9_-]{1,64}\/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface ManifestChunk {
  key: string;
  text: string;
  tokenIds: number[];
}

export interface DocumentManifest {
  version: 1;
  id: string;
  /** The owning tenant; absent in manifests written before tenants existed (DEFAULT_TENANT). */
  tenant?: string;
  /** The salt in the chunk keys (see chunkKey); absent or '' for none. */
  cacheSalt?: string;
  /** Model fingerprint the chunk keys belong to. */
  fingerprint: string;
  createdAt: string;
  updatedAt: string;
  metadata: Record<string, unknown>;
  chunks: ManifestChunk[];
}

const ManifestSchema = z.object({
  version: z.literal(1),
  id: documentIdSchema,
  tenant: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/)
    .optional(),
  cacheSalt: z.string().max(64).optional(),
  fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
  updatedAt: z.string(),
  metadata: z.record(z.string(), z.unknown()),
  chunks: z.array(
    z.object({
      key: z.string().regex(/^[0-9a-f]{64}$/),
      text: z.string(),
      tokenIds: z.array(z.number().int().min(0)).min(1),
    }),
  ),
});

export function manifestObjectKey(name: string): string {
  if (!DOCUMENT_NAME_RE.test(name))
    throw new InvalidArgumentError(`invalid document name ${JSON.stringify(name)}`);
  return `docs/${name}.json`;
}

/** The document name a manifest object key belongs to, or null for any other key. */
export function nameOfManifestKey(objectKey: string): string | null {
  const m = /^docs\/(.+)\.json$/.exec(objectKey);
  return m && DOCUMENT_NAME_RE.test(m[1]) ? m[1] : null;
}

export function encodeManifest(m: DocumentManifest): Buffer {
  return Buffer.from(`${JSON.stringify(m)}\n`);
}

/** Parse and check a manifest; KvFormatError says what is wrong with a damaged one. */
export function decodeManifest(buf: Buffer): DocumentManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw new KvFormatError('manifest is not JSON', { cause: err });
  }
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new KvFormatError(`manifest: ${issue.path.join('.') || 'body'}: ${issue.message}`);
  }
  return parsed.data as DocumentManifest;
}
