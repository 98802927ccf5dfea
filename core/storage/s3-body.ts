/**
 * Reading and checking S3 object bodies: the MD5 put() records with an object, a body's length against
 * Content-Length, and a ranged answer cut to the range asked for.
 */
import { createHash } from 'node:crypto';
import { UnavailableError } from '../errors.js';

/** User-metadata key holding the hex MD5 of the object as stored by put(). */
export const MD5_METADATA = 'cb-md5';

/** A body that does not match what the server promised or what was stored; worth fetching again. */
export class IntegrityError extends Error {}

export function md5(data: Buffer): Buffer {
  return createHash('md5').update(data).digest();
}

export function copyRange(body: Buffer, start: number, endExclusive: number): Buffer {
  return Buffer.from(body.subarray(Math.min(start, body.length), Math.min(endExclusive, body.length)));
}

interface Body {
  transformToByteArray(): Promise<Uint8Array>;
}

/** Stops reading a response body (a stalled download): its socket is closed. */
export function destroyBody(body: unknown): void {
  const b = body as { destroy?: () => void } | undefined;
  b?.destroy?.();
}

export async function readBody(
  body: Body | undefined,
  contentLength: number | undefined,
  key: string,
): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const bytes = await body.transformToByteArray();
  const out = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (contentLength !== undefined && out.length !== contentLength) {
    throw new UnavailableError(
      `S3 object ${key}: got ${out.length} bytes, Content-Length was ${contentLength}`,
    );
  }
  return out;
}
