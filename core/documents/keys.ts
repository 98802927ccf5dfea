/**
 * Where the documents' bookkeeping lives in Redis, under `{<QUEUE_PREFIX>}:` — the prefix in a hash tag, so
 * every key below sits in one Redis Cluster slot and every script may touch any of them (BullMQ's queues
 * use the same tagged prefix, see core/queue/redis.ts `keyPrefix`):
 *   doc:<name>        hash    id, tenant, chunks (JSON list of chunk keys, in order), ntokens (their sum),
 *                             meta (JSON), createdAt, updatedAt; <name> is the document's name (names.ts)
 *   chunk:<key>       hash    state (pending|ready|failed|deleting|unreferenced), gen, tokens (JSON ids),
 *                             ntokens, fp, salt, bytes, written, error, updatedAt
 *   refs:<key>        set     names of the documents that use the chunk
 *   lock:<key>        string  held while a chunk object is written (precompute) or deleted (garbage collection)
 *   doclock:<name>    string  held while a document is written or deleted (manifest and index change together)
 *   gc                set     chunk keys no document references, whose objects still have to be deleted
 *   pending           zset    chunk keys in state pending, scored by when they were last (re)enqueued
 *   failed            zset    chunk keys in state failed, scored by when they failed
 *   reconcile         string  held by the precompute worker running a reconciler round
 *   evict             channel chunk keys whose objects were deleted: blend workers drop their copies
 *   docs              zset    every document as `<tenant>/<id>` (names.ts `listKey`), score 0: a tenant's
 *                             documents are one lexicographic range, listed in id order by ZRANGEBYLEX
 *   corpus:log        stream  one entry per ingest or delete (`op`, `doc` = the document's name), trimmed
 *                             to about CORPUS_LOG_LENGTH entries: each API process tails it to keep its
 *                             ranking index current
 * The Lua scripts (lua/*.lua) build refs and chunk keys from the same prefix.
 */
import { keyPrefix } from '../queue/redis.js';

/** Entries the corpus change log keeps (XADD MAXLEN ~): a process further behind rebuilds its index. */
export const CORPUS_LOG_LENGTH = 100_000;

export class DocumentKeys {
  /** `{<prefix>}:`, passed to the scripts that derive keys themselves. */
  readonly prefix: string;

  constructor(queuePrefix: string) {
    this.prefix = `${keyPrefix(queuePrefix)}:`;
  }

  doc(name: string): string {
    return `${this.prefix}doc:${name}`;
  }
  chunk(key: string): string {
    return `${this.prefix}chunk:${key}`;
  }
  refs(key: string): string {
    return `${this.prefix}refs:${key}`;
  }
  lock(key: string): string {
    return `${this.prefix}lock:${key}`;
  }
  docLock(name: string): string {
    return `${this.prefix}doclock:${name}`;
  }
  get gc(): string {
    return `${this.prefix}gc`;
  }
  get pending(): string {
    return `${this.prefix}pending`;
  }
  get failed(): string {
    return `${this.prefix}failed`;
  }
  get reconcile(): string {
    return `${this.prefix}reconcile`;
  }
  get evict(): string {
    return `${this.prefix}evict`;
  }
  get docList(): string {
    return `${this.prefix}docs`;
  }
  get corpusLog(): string {
    return `${this.prefix}corpus:log`;
  }
}
