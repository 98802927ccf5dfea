/**
 * Where the documents' bookkeeping lives in Redis, under `<prefix>:` (QUEUE_PREFIX):
 *   doc:<id>      hash  id, chunks (JSON list of chunk keys, in order), meta (JSON), createdAt, updatedAt
 *   chunk:<key>   hash  state (pending|ready|failed|deleting), tokens (JSON ids), ntokens, fp, bytes,
 *                       written, error, updatedAt
 *   refs:<key>    set   ids of the documents that use the chunk
 *   lock:<key>    string  held while a chunk object is written (precompute) or deleted (garbage collection)
 *   gc            set   chunk keys no document references, whose objects still have to be deleted
 *   docs          zset  every document id, score 0 (listed in id order, paginated by ZRANGEBYLEX)
 *   corpus:log    stream  one entry per ingest or delete (`op`, `doc`), trimmed to about
 *                       CORPUS_LOG_LENGTH entries: each API process tails it to keep its ranking index current
 * The Lua scripts (lua/*.lua) build the refs and chunk keys from the same prefix.
 */
/** Entries the corpus change log keeps (XADD MAXLEN ~): a process further behind rebuilds its index. */
export const CORPUS_LOG_LENGTH = 100_000;

export class DocumentKeys {
  /** `<prefix>:`, passed to the scripts that derive keys themselves. */
  readonly prefix: string;

  constructor(keyPrefix: string) {
    this.prefix = `${keyPrefix}:`;
  }

  doc(id: string): string {
    return `${this.prefix}doc:${id}`;
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
  get gc(): string {
    return `${this.prefix}gc`;
  }
  get docList(): string {
    return `${this.prefix}docs`;
  }
  get corpusLog(): string {
    return `${this.prefix}corpus:log`;
  }
}
