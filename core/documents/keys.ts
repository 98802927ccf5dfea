/**
 * Where the documents' bookkeeping lives in Redis, under `<prefix>:` (QUEUE_PREFIX):
 *   doc:<id>      hash  id, chunks (JSON list of chunk keys, in order), meta (JSON), createdAt, updatedAt
 *   chunk:<key>   hash  state (pending|ready|failed|deleting), tokens (JSON ids), ntokens, fp, bytes,
 *                       written, error, updatedAt
 *   refs:<key>    set   ids of the documents that use the chunk
 *   lock:<key>    string  held while a chunk object is written (precompute) or deleted (garbage collection)
 *   gc            set   chunk keys no document references, whose objects still have to be deleted
 * The Lua scripts (lua/*.lua) build the refs and chunk keys from the same prefix.
 */
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
}
