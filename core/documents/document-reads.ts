/**
 * The read side of the document index: document status and listings, chunk lists, token ids and chunk
 * states, read from Redis (the live truth) and, for manifests, the object store. DocumentService (which
 * writes) extends this class; see documents.ts for the keys and the consistency rules.
 */
import type { ChainableCommander } from 'ioredis';
import { DEFAULT_TENANT } from '../config/index.js';
import { NotFoundError, UnavailableError, errorMessage, tooLargeField, type ErrorData } from '../errors.js';
import { decodeFailure, type BlendChunkRef } from '../queue/contracts.js';
import { redisCall, type RedisClient } from '../queue/redis.js';
import type { ObjectStore } from '../storage/types.js';
import { decodeManifest, manifestObjectKey, type DocumentManifest } from './manifest.js';
import type { DocumentKeys } from './keys.js';
import { documentName, listKey, nameOfListKey } from './names.js';
import type { ChunkState, ChunkStatus, DocumentState, DocumentStatus, DocumentSummary } from './types.js';

export function parseList<T = string>(json: string): T[] {
  const v = JSON.parse(json) as unknown;
  return Array.isArray(v) ? (v as T[]) : []; // cjson encodes an empty table as {}
}

export class DocumentReads {
  constructor(
    protected readonly redis: RedisClient,
    protected readonly store: ObjectStore,
    readonly keys: DocumentKeys,
  ) {}

  /**
   * One command per item, sent as one pipeline; the replies in item order. A command that failed is an
   * UnavailableError. No items: no round trip.
   */
  private async pipelined<T>(
    items: readonly T[],
    add: (p: ChainableCommander, item: T) => void,
  ): Promise<unknown[]> {
    if (items.length === 0) return [];
    const p = this.redis.pipeline();
    for (const item of items) add(p, item);
    const replies = (await redisCall(() => p.exec())) ?? [];
    return items.map((_, i) => {
      const [err, value] = replies[i] ?? [null, null];
      if (err) throw new UnavailableError(`Redis is unavailable: ${errorMessage(err)}`);
      return value;
    });
  }

  /** Each named document's chunk keys in order; NotFoundError names an unknown id. */
  private async chunkKeyLists(ids: string[], tenant: string): Promise<string[][]> {
    const values = await this.pipelined(ids, (p, id) =>
      p.hget(this.keys.doc(documentName(tenant, id)), 'chunks'),
    );
    return values.map((value, i) => {
      if (value == null) throw new NotFoundError(`document ${JSON.stringify(ids[i])} not found`);
      return parseList(value as string);
    });
  }

  async status(id: string, tenant = DEFAULT_TENANT): Promise<DocumentStatus | null> {
    const doc = await redisCall(() => this.redis.hgetall(this.keys.doc(documentName(tenant, id))));
    if (!doc.chunks) return null;
    const keys = parseList(doc.chunks);
    const info = await this.chunkStates([...new Set(keys)]);
    const chunks: ChunkStatus[] = keys.map((key, index) => {
      const c = info.get(key)!;
      const status: DocumentState = c.state === 'ready' || c.state === 'failed' ? c.state : 'pending';
      return {
        index,
        key,
        tokens: c.ntokens,
        status,
        ...(status === 'failed' && c.error && { error: c.error }),
      };
    });
    const ready = chunks.filter((c) => c.status === 'ready').length;
    const failed = chunks.filter((c) => c.status === 'failed').length;
    const total = chunks.length;
    return {
      id,
      status: failed > 0 ? 'failed' : ready === total ? 'ready' : 'pending',
      progress: { ready, failed, total, fraction: total === 0 ? 1 : ready / total },
      chunks,
      metadata: doc.meta ? (JSON.parse(doc.meta) as Record<string, unknown>) : {},
      createdAt: doc.createdAt,
      updatedAt: doc.updatedAt,
    };
  }

  private async chunkStates(
    keys: string[],
  ): Promise<Map<string, { state: ChunkState; ntokens: number; error?: string }>> {
    const values = await this.pipelined(keys, (p, k) =>
      p.hmget(this.keys.chunk(k), 'state', 'ntokens', 'error'),
    );
    const info = new Map<string, { state: ChunkState; ntokens: number; error?: string }>();
    keys.forEach((k, i) => {
      const [state, ntokens, error] = (values[i] ?? []) as (string | null)[];
      info.set(k, {
        state: (state as ChunkState) ?? 'pending',
        ntokens: Number(ntokens ?? 0),
        // Shown as `CODE: message`; stored as the error's data (decodeFailure).
        ...(error !== null && error !== undefined && { error: failureText(decodeFailure(error)) }),
      });
    });
    return info;
  }

  /** The chunks of the given documents of one tenant, in order, with their token ids. */
  async chunkRefs(ids: string[], tenant = DEFAULT_TENANT): Promise<BlendChunkRef[]> {
    return (await this.chunkRefsByDocument(ids, tenant)).flat();
  }

  /**
   * Each document's chunks (documents of one tenant, by id), in order, with their token ids.
   * NotFoundError names unknown ids.
   */
  async chunkRefsByDocument(ids: string[], tenant = DEFAULT_TENANT): Promise<BlendChunkRef[][]> {
    const perDoc = await this.chunkKeyLists(ids, tenant);
    const byKey = await this.tokensOf([...new Set(perDoc.flat())]);
    return perDoc.map((keys) =>
      keys.map((key) => {
        const tokenIds = byKey.get(key);
        if (!tokenIds)
          throw new UnavailableError(`chunk ${key} has no token record (document being changed?)`);
        return { key, tokenIds };
      }),
    );
  }

  /** Token ids of chunks by key; keys without a record (released meanwhile) are absent from the map. */
  async tokensOf(keys: string[]): Promise<Map<string, number[]>> {
    const out = new Map<string, number[]>();
    const values = await this.pipelined(keys, (p, k) => p.hget(this.keys.chunk(k), 'tokens'));
    keys.forEach((k, i) => {
      if (values[i] != null) out.set(k, JSON.parse(values[i] as string) as number[]);
    });
    return out;
  }

  /** The model fingerprint each chunk's token ids belong to (chunks without a record are absent). */
  async fingerprintsOf(keys: string[]): Promise<Map<string, string>> {
    const values = await this.pipelined(keys, (p, k) => p.hget(this.keys.chunk(k), 'fp'));
    return new Map(
      keys.flatMap((k, i) => (typeof values[i] === 'string' ? [[k, values[i] as string] as const] : [])),
    );
  }

  /**
   * A document's chunk keys in order (Redis, the live truth), or null when it does not exist. Takes the
   * document's name (names.ts), as the corpus change log and index use it.
   */
  async chunkKeysOf(name: string): Promise<string[] | null> {
    const v = await redisCall(() => this.redis.hget(this.keys.doc(name), 'chunks'));
    return v == null ? null : parseList(v);
  }

  /** A document's manifest from the object store (by name), or null when there is none. */
  async manifest(name: string): Promise<DocumentManifest | null> {
    const buf = await this.store.get(manifestObjectKey(name));
    return buf ? decodeManifest(buf) : null;
  }

  /**
   * Each named document's chunks as keys and token counts (no token ids: those are read only for the
   * chunks a query uses, see tokensOf). The documents' sizes are checked first, from their counts alone:
   * more than `maxChunks` chunks in all is a TooLargeError (413) before any list is read. NotFoundError
   * names an unknown id.
   */
  async chunkListsByDocument(
    ids: string[],
    tenant: string,
    maxChunks: number,
  ): Promise<{ key: string; tokens: number }[][]> {
    const counts = await this.chunkCounts(ids, tenant);
    counts.forEach((n, i) => {
      if (n === null) throw new NotFoundError(`document ${JSON.stringify(ids[i])} not found`);
    });
    const total = counts.reduce((a: number, n) => a + (n ?? 0), 0);
    if (total > maxChunks) {
      throw tooLargeField(
        'documents',
        `the named documents hold ${total} chunks, more than a query may draw on (MAX_QUERY_CHUNKS ${maxChunks})`,
      );
    }
    const lists = await this.chunkKeyLists(ids, tenant);
    const unique = [...new Set(lists.flat())];
    const ntokens = await this.pipelined(unique, (p, k) => p.hget(this.keys.chunk(k), 'ntokens'));
    const tokens = new Map(unique.map((k, i) => [k, Number(ntokens[i] ?? 0)]));
    return lists.map((keys) => keys.map((key) => ({ key, tokens: tokens.get(key)! })));
  }

  /** How many chunks each named document of a tenant has (null: no such document), without loading them. */
  async chunkCounts(ids: string[], tenant = DEFAULT_TENANT): Promise<(number | null)[]> {
    const values = await this.pipelined(ids, (p, id) =>
      p.hmget(this.keys.doc(documentName(tenant, id)), 'nchunks', 'chunks'),
    );
    return values.map((value) => {
      const [nchunks, chunks] = value as (string | null)[];
      if (nchunks != null) return Number(nchunks);
      return chunks == null ? null : parseList(chunks).length; // indexed before counts were kept
    });
  }

  /**
   * One page of a tenant's documents in id order, each with its status (chunk list left out): up to
   * `limit` ids after `cursor` (exclusive), and the cursor of the next page (null on the last).
   */
  async list(opts: {
    cursor?: string;
    limit: number;
    tenant?: string;
  }): Promise<{ documents: DocumentSummary[]; nextCursor: string | null }> {
    const tenant = opts.tenant ?? DEFAULT_TENANT;
    // A tenant's list keys are `<tenant>/<id>`: the range from `<tenant>/` up to `<tenant>0` ('0' follows '/').
    const from = opts.cursor === undefined ? `[${tenant}/` : `(${listKey(tenant, opts.cursor)}`;
    const keys = await redisCall(() =>
      this.redis.zrangebylex(this.keys.docList, from, `(${tenant}0`, 'LIMIT', 0, opts.limit + 1),
    );
    const ids = keys.map((k) => k.slice(tenant.length + 1));
    const page = ids.slice(0, opts.limit);
    const statuses = await Promise.all(page.map((id) => this.status(id, tenant)));
    const documents = statuses
      .filter((s): s is DocumentStatus => s !== null)
      .map(({ chunks, ...rest }) => ({ ...rest, chunks: chunks.length }));
    return { documents, nextCursor: ids.length > opts.limit ? page[page.length - 1] : null };
  }

  /** Id of the corpus change log's last entry ('0-0' when empty). */
  async corpusLogHead(): Promise<string> {
    const last = await redisCall(() => this.redis.xrevrange(this.keys.corpusLog, '+', '-', 'COUNT', 1));
    return last[0]?.[0] ?? '0-0';
  }

  /** Every document's name (all tenants), in list order, a page at a time. */
  async *allNames(pageSize = 1_000): AsyncGenerator<string[]> {
    let from = '-';
    for (;;) {
      const keys = await redisCall(() =>
        this.redis.zrangebylex(this.keys.docList, from, '+', 'LIMIT', 0, pageSize),
      );
      const names = keys.map(nameOfListKey).filter((n): n is string => n !== null);
      if (names.length > 0) yield names;
      if (keys.length < pageSize) return;
      from = `(${keys[keys.length - 1]}`;
    }
  }

  /** Chunk hash fields (state, bytes stored and written, token count), for the batch summary and tests. */
  async chunkInfo(
    keys: string[],
  ): Promise<Map<string, { state: ChunkState | null; written: number; bytes: number; tokens: number }>> {
    const out = new Map<
      string,
      { state: ChunkState | null; written: number; bytes: number; tokens: number }
    >();
    const values = await this.pipelined(keys, (p, k) =>
      p.hmget(this.keys.chunk(k), 'state', 'written', 'bytes', 'ntokens'),
    );
    keys.forEach((k, i) => {
      const [state, written, bytes, tokens] = (values[i] ?? []) as (string | null)[];
      out.set(k, {
        state: state as ChunkState | null,
        written: Number(written ?? 0),
        bytes: Number(bytes ?? 0),
        tokens: Number(tokens ?? 0),
      });
    });
    return out;
  }
}

/** A chunk's failure as its status shows it. */
function failureText(e: ErrorData): string {
  return `${e.code}: ${e.message}`;
}
