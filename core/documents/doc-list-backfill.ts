/**
 * The document list (`docs`, keys.ts) for an index written before the list existed: a SCAN over the
 * document hashes adds each one, idempotently (ZADD NX). The corpus index runs it before each rebuild.
 */
import { redisCall, type RedisClient } from '../queue/redis.js';
import type { DocumentKeys } from './keys.js';
import { listKey, parseDocumentName } from './names.js';

/** List every indexed document missing from the document list. Returns how many were added. */
export async function backfillDocList(redis: RedisClient, keys: DocumentKeys): Promise<number> {
  let cursor = '0';
  let added = 0;
  const prefix = keys.doc('');
  do {
    const [next, found] = await redisCall(() => redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1_000));
    cursor = next;
    const listed = found
      .map((k) => listedName(k.slice(prefix.length)))
      .filter((k): k is string => k !== null);
    if (listed.length) {
      added += await redisCall(() => redis.zadd(keys.docList, 'NX', ...listed.flatMap((k) => [0, k])));
    }
  } while (cursor !== '0');
  return added;
}

/** The document list's entry for a document name; null for a key that is not a document's. */
function listedName(name: string): string | null {
  try {
    const ref = parseDocumentName(name);
    return listKey(ref.tenant, ref.id);
  } catch {
    return null;
  }
}
