/**
 * Documents and the chunk bookkeeping behind them.
 *
 * Object store: `docs/<name>.json` (the manifest, see manifest.ts) and `kv/…` (chunk caches, chunkObjectKey).
 * Redis: the keys in keys.ts, changed by the scripts in lua/ (scripts.ts).
 *
 * A document's status is computed when asked, from its chunks' states: ready when all are ready, failed
 * when any failed, pending otherwise. Reference changes happen in Lua scripts (atomic). A document's
 * manifest and index entry change together under the document's lock, so concurrent writers of one id
 * leave both describing the same version. Writing and deleting a chunk's object happen under the chunk's
 * lock, and both re-check the references inside it, so an ingest racing a delete of the same chunk ends
 * with the object present and the chunk pending or ready, never "ready" with no object (see `collect`);
 * a chunk's job generation (lua/ingest.lua) keeps a finishing job from swallowing the next one. Every key
 * carries the `{prefix}` hash tag, so all of this runs on Redis Cluster too.
 */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { DEFAULT_TENANT } from '../config/index.js';
import { NotFoundError, TooLargeError, UnavailableError, errorMessage } from '../errors.js';
import { chunkKey, chunkObjectKey } from '../kv/format.js';
import {
  PRECOMPUTE_JOB,
  precomputeJobId,
  precomputeJobOptions,
  type BlendChunkRef,
  type PrecomputeJobData,
  type PrecomputeJobResult,
} from '../queue/contracts.js';
import { redisCall, type RedisClient } from '../queue/redis.js';
import type { ObjectStore } from '../storage/types.js';
import {
  decodeManifest,
  encodeManifest,
  manifestObjectKey,
  type DocumentManifest,
  type ManifestChunk,
} from './manifest.js';
import { silentLogger, type Logger } from '../ops/log.js';
import { CORPUS_LOG_LENGTH, DocumentKeys } from './keys.js';
import { RedisLocks } from './locks.js';
import { documentName, listKey, nameOfListKey, parseDocumentName } from './names.js';
import { documentScripts, type ScriptCaller } from './scripts.js';
import type { ModelIdentity } from './text.js';

export type ChunkState = 'pending' | 'ready' | 'failed' | 'deleting' | 'unreferenced';
export type DocumentState = 'pending' | 'ready' | 'failed';

export interface DocumentInput {
  id?: string;
  text?: string;
  chunks?: string[];
  metadata?: Record<string, unknown>;
}

export type { ModelIdentity } from './text.js';

export interface IngestOptions {
  /** Most tokens per chunk (CHUNK_TOKEN_BUDGET; capped below the model's context). */
  budget: number;
  /** Owner (default: DEFAULT_TENANT). */
  tenant?: string;
  /** Cache salt of the tenant's chunk keys (see names.ts `cacheSalt`; default none). */
  salt?: string;
  /** Id of the request (or batch run) that ingests, carried into its precompute jobs for the logs. */
  requestId?: string;
}

export interface IngestResult {
  id: string;
  chunks: number;
  /** The document's chunk keys, in order. */
  keys: string[];
  /** Distinct chunks a precompute job was enqueued for. */
  enqueued: string[];
  /** Distinct chunks already ready when the document was stored. */
  alreadyReady: string[];
  /** False when the document existed with exactly these chunks and metadata (nothing was rewritten). */
  changed: boolean;
}

export interface ChunkStatus {
  index: number;
  key: string;
  tokens: number;
  status: DocumentState;
  error?: string;
}

export interface DocumentStatus {
  id: string;
  status: DocumentState;
  progress: { ready: number; failed: number; total: number; fraction: number };
  chunks: ChunkStatus[];
  metadata: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/** What the index records of a document (from a request, or from its manifest on rebuild). */
interface IndexEntry {
  name: string;
  tenant: string;
  id: string;
  chunks: ManifestChunk[];
  metadata: Record<string, unknown>;
  fingerprint: string;
  salt: string;
  now: string;
  /** createdAt when the index has no entry yet (a rebuild: the manifest's); default `now`. */
  createdAt?: string;
  requestId?: string;
}

/** A document in a listing: its status without the per-chunk list (`chunks` is the count). */
export type DocumentSummary = Omit<DocumentStatus, 'chunks'> & { chunks: number };

/** How long a document write waits for a concurrent write of the same document. */
const DOC_LOCK_WAIT_MS = 15_000;

function parseList<T = string>(json: string): T[] {
  const v = JSON.parse(json) as unknown;
  return Array.isArray(v) ? (v as T[]) : []; // cjson encodes an empty table as {}
}

export class DocumentService {
  readonly keys: DocumentKeys;
  readonly locks: RedisLocks;
  private readonly script: ScriptCaller;

  constructor(
    private readonly redis: RedisClient,
    private readonly store: ObjectStore,
    private readonly precomputeQueue: Queue | null,
    queuePrefix: string,
    private readonly log: Logger = silentLogger,
    private readonly precomputeAttempts = 12,
  ) {
    this.keys = new DocumentKeys(queuePrefix);
    this.script = documentScripts(redis);
    this.locks = new RedisLocks(redis, this.script, log);
  }

  /** Chunk a document (text or explicit chunks) and compute each chunk's key; throws InvalidArgumentError. */
  async prepare(
    input: DocumentInput,
    model: ModelIdentity,
    opts: IngestOptions,
  ): Promise<{ id: string; chunks: ManifestChunk[] }> {
    const id = input.id ?? randomUUID();
    documentName(opts.tenant ?? DEFAULT_TENANT, id); // validates the id before any work
    const budget = Math.max(1, Math.min(opts.budget, model.contextLength - 1));
    const pieces = await model.chunkDocument({ text: input.text, chunks: input.chunks }, budget);
    const salt = opts.salt ?? '';
    return { id, chunks: pieces.map((c) => ({ ...c, key: chunkKey(model.fingerprint, c.tokenIds, salt) })) };
  }

  /**
   * Store a document (replacing one with the same id) and enqueue precompute jobs for its chunks that are
   * not ready. Under the document's lock: the manifest first, then the index, so Redis never names a
   * document the store does not describe, and concurrent writers of one id end in agreement.
   */
  async ingest(input: DocumentInput, model: ModelIdentity, opts: IngestOptions): Promise<IngestResult> {
    const tenant = opts.tenant ?? DEFAULT_TENANT;
    const { id, chunks } = await this.prepare(input, model, opts);
    const name = documentName(tenant, id);
    const metadata = input.metadata ?? {};
    const entry = {
      name,
      tenant,
      id,
      chunks,
      metadata,
      fingerprint: model.fingerprint,
      salt: opts.salt ?? '',
      requestId: opts.requestId,
    };
    const r = await this.locks.with(this.keys.docLock(name), DOC_LOCK_WAIT_MS, `document ${id}`, async () => {
      const existing = await redisCall(() =>
        this.redis.hmget(this.keys.doc(name), 'chunks', 'meta', 'createdAt'),
      );
      const now = new Date().toISOString();
      const changed =
        existing[0] !== JSON.stringify(chunks.map((c) => c.key)) || existing[1] !== JSON.stringify(metadata);
      if (changed) {
        const manifest: DocumentManifest = {
          version: 1,
          id,
          ...(tenant !== DEFAULT_TENANT && { tenant }),
          ...(entry.salt !== '' && { cacheSalt: entry.salt }),
          fingerprint: model.fingerprint,
          createdAt: existing[2] ?? now,
          updatedAt: now,
          metadata,
          chunks,
        };
        await this.store.put(manifestObjectKey(name), encodeManifest(manifest));
      }
      return { changed, ...(await this.index({ ...entry, now })) };
    });
    if (r.orphans.length > 0) await this.collect(r.orphans, 5_000);
    const keys = chunks.map((c) => c.key);
    return {
      id,
      chunks: chunks.length,
      keys,
      enqueued: r.enqueued,
      alreadyReady: r.ready,
      changed: r.changed,
    };
  }

  /** Record a document in the index (ingest.lua) and enqueue its chunks that need computing. */
  private async index(e: IndexEntry): Promise<{ enqueued: string[]; ready: string[]; orphans: string[] }> {
    const keys = e.chunks.map((c) => c.key);
    const toks = e.chunks.map((c) => [JSON.stringify(c.tokenIds), String(c.tokenIds.length)]);
    const ntokens = e.chunks.reduce((a, c) => a + c.tokenIds.length, 0);
    const [enqueueJson, readyJson, orphansJson] = (await redisCall(() =>
      this.script(
        'ingest',
        [
          this.keys.doc(e.name),
          this.keys.gc,
          this.keys.pending,
          this.keys.failed,
          this.keys.docList,
          this.keys.corpusLog,
        ],
        [
          this.keys.prefix,
          e.name,
          e.now,
          JSON.stringify(e.metadata),
          JSON.stringify(keys),
          JSON.stringify(toks),
          e.fingerprint,
          e.salt,
          Date.now(),
          e.tenant,
          e.id,
          ntokens,
          listKey(e.tenant, e.id),
          CORPUS_LOG_LENGTH,
          e.createdAt ?? '',
        ],
      ),
    )) as [string, string, string];
    const toEnqueue = parseList<[string, number]>(enqueueJson);
    const byKey = new Map(e.chunks.map((c) => [c.key, c]));
    await this.enqueue(
      toEnqueue.map(([key, gen]) => ({
        gen,
        data: {
          key,
          fingerprint: e.fingerprint,
          tokenIds: byKey.get(key)!.tokenIds,
          salt: e.salt,
          ...(e.requestId && { requestId: e.requestId }),
        },
      })),
    );
    return {
      enqueued: toEnqueue.map(([k]) => k),
      ready: parseList(readyJson),
      orphans: parseList(orphansJson),
    };
  }

  /**
   * Restore a document's index entry from its manifest (`cacheblend rebuild`), unless the index already
   * holds exactly these chunks. Chunks whose objects are stored become ready once a precompute worker has
   * checked them (without recomputing). Returns whether the entry was written.
   */
  async restore(manifest: DocumentManifest): Promise<{ restored: boolean; enqueued: number }> {
    const tenant = manifest.tenant ?? DEFAULT_TENANT;
    const name = documentName(tenant, manifest.id);
    return this.locks.with(this.keys.docLock(name), DOC_LOCK_WAIT_MS, `document ${manifest.id}`, async () => {
      const existing = await redisCall(() => this.redis.hget(this.keys.doc(name), 'chunks'));
      if (existing === JSON.stringify(manifest.chunks.map((c) => c.key)))
        return { restored: false, enqueued: 0 };
      const r = await this.index({
        name,
        tenant,
        id: manifest.id,
        chunks: manifest.chunks,
        metadata: manifest.metadata,
        fingerprint: manifest.fingerprint,
        salt: manifest.cacheSalt ?? '',
        now: manifest.updatedAt,
        createdAt: manifest.createdAt,
      });
      if (r.orphans.length > 0) await this.collect(r.orphans, 5_000);
      return { restored: true, enqueued: r.enqueued.length };
    });
  }

  /** Add precompute jobs; a job id that exists (the chunk's generation is queued or running) is kept. */
  async enqueue(jobs: { gen: number; data: PrecomputeJobData }[]): Promise<void> {
    if (jobs.length === 0) return;
    if (!this.precomputeQueue) throw new UnavailableError('no precompute queue configured');
    const opts = precomputeJobOptions(this.precomputeAttempts);
    await redisCall(
      () =>
        this.precomputeQueue!.addBulk(
          jobs.map(({ gen, data }) => ({
            name: PRECOMPUTE_JOB,
            data,
            opts: { jobId: precomputeJobId(data.key, gen), ...opts },
          })),
        ),
      'Redis (precompute queue)',
    );
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
    const pipeline = this.redis.pipeline();
    for (const k of keys) pipeline.hmget(this.keys.chunk(k), 'state', 'ntokens', 'error');
    const replies = keys.length ? ((await redisCall(() => pipeline.exec())) ?? []) : [];
    const info = new Map<string, { state: ChunkState; ntokens: number; error?: string }>();
    keys.forEach((k, i) => {
      const [err, value] = replies[i] ?? [null, []];
      if (err) throw new UnavailableError(`Redis is unavailable: ${errorMessage(err)}`);
      const [state, ntokens, error] = value as (string | null)[];
      info.set(k, {
        state: (state as ChunkState) ?? 'pending',
        ntokens: Number(ntokens ?? 0),
        error: error ?? undefined,
      });
    });
    return info;
  }

  /** Remove a document; chunk objects no other document references are deleted. Null when unknown. */
  async remove(
    id: string,
    tenant = DEFAULT_TENANT,
    lockWaitMs = 5_000,
  ): Promise<{ chunksDeleted: number } | null> {
    const name = documentName(tenant, id);
    const orphans = await this.locks.with(
      this.keys.docLock(name),
      DOC_LOCK_WAIT_MS,
      `document ${id}`,
      async () => {
        const exists = await redisCall(() => this.redis.exists(this.keys.doc(name)));
        if (!exists) return null;
        await this.store.delete(manifestObjectKey(name));
        const res = (await redisCall(() =>
          this.script(
            'delete',
            [this.keys.doc(name), this.keys.gc, this.keys.docList, this.keys.corpusLog],
            [this.keys.prefix, name, listKey(tenant, id), CORPUS_LOG_LENGTH],
          ),
        )) as string | null;
        return res === null ? null : parseList(res);
      },
    );
    if (orphans === null) return null;
    return { chunksDeleted: await this.collect(orphans, lockWaitMs) };
  }

  /**
   * Delete the objects of unreferenced chunks, each under its lock, and tell every blend worker to drop
   * its copies (the `evict` channel). Chunks whose lock cannot be taken in `lockWaitMs`, or whose deletion
   * fails, stay in the gc set for `sweep` to retry. Returns how many objects were deleted.
   */
  async collect(keys: string[], lockWaitMs = 5_000): Promise<number> {
    const gone: string[] = [];
    for (const key of keys) {
      try {
        const gcKeys = [this.keys.refs(key), this.keys.chunk(key), this.keys.gc];
        const done = await this.locks.tryWith(this.keys.lock(key), lockWaitMs, async () => {
          const fp = (await redisCall(() => this.script('gc-begin', gcKeys, [key]))) as string | null;
          if (fp === null) return false; // referenced again: keep it
          if (/^[0-9a-f]{64}$/.test(fp)) await this.store.delete(chunkObjectKey(fp, key));
          await redisCall(() =>
            this.script('gc-end', [...gcKeys, this.keys.pending, this.keys.failed], [key]),
          );
          return true;
        });
        if (!done) this.log.info('chunk garbage collection deferred: chunk is locked', { key });
        if (done?.value) gone.push(key);
      } catch (err) {
        this.log.warn('chunk garbage collection deferred', { key, error: errorMessage(err) });
      }
    }
    if (gone.length > 0) {
      await this.redis
        .publish(this.keys.evict, JSON.stringify(gone))
        .catch((err: unknown) =>
          this.log.warn('could not announce deleted chunks to blend workers', { error: errorMessage(err) }),
        );
    }
    return gone.length;
  }

  /** Retry garbage collection of every chunk left in the gc set. */
  async sweep(lockWaitMs = 1_000): Promise<number> {
    const keys = await redisCall(() => this.redis.smembers(this.keys.gc));
    return keys.length ? this.collect(keys, lockWaitMs) : 0;
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
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hget(this.keys.doc(documentName(tenant, id)), 'chunks');
    const replies = (await redisCall(() => pipeline.exec())) ?? [];
    const perDoc = ids.map((id, i) => {
      const [err, value] = replies[i] ?? [null, null];
      if (err) throw new UnavailableError(`Redis is unavailable: ${errorMessage(err)}`);
      if (value == null) throw new NotFoundError(`document ${JSON.stringify(id)} not found`);
      return parseList(value as string);
    });
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
    if (keys.length === 0) return out;
    const p = this.redis.pipeline();
    for (const k of keys) p.hget(this.keys.chunk(k), 'tokens');
    const replies = (await redisCall(() => p.exec())) ?? [];
    keys.forEach((k, i) => {
      const [err, value] = replies[i] ?? [null, null];
      if (err) throw new UnavailableError(`Redis is unavailable: ${errorMessage(err)}`);
      if (value != null) out.set(k, JSON.parse(value as string) as number[]);
    });
    return out;
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
      throw new TooLargeError(
        `documents: the named documents hold ${total} chunks, more than a query may draw on (MAX_QUERY_CHUNKS ${maxChunks})`,
      );
    }
    const p = this.redis.pipeline();
    for (const id of ids) p.hget(this.keys.doc(documentName(tenant, id)), 'chunks');
    const lists = ((await redisCall(() => p.exec())) ?? []).map(([err, value], i) => {
      if (err) throw new UnavailableError(`Redis is unavailable: ${errorMessage(err)}`);
      if (value == null) throw new NotFoundError(`document ${JSON.stringify(ids[i])} not found`);
      return parseList(value as string);
    });
    const unique = [...new Set(lists.flat())];
    const q = this.redis.pipeline();
    for (const k of unique) q.hget(this.keys.chunk(k), 'ntokens');
    const replies = unique.length ? ((await redisCall(() => q.exec())) ?? []) : [];
    const tokens = new Map(unique.map((k, i) => [k, Number(replies[i]?.[1] ?? 0)]));
    return lists.map((keys) => keys.map((key) => ({ key, tokens: tokens.get(key)! })));
  }

  /** How many chunks each named document of a tenant has (null: no such document), without loading them. */
  async chunkCounts(ids: string[], tenant = DEFAULT_TENANT): Promise<(number | null)[]> {
    const p = this.redis.pipeline();
    for (const id of ids) p.hmget(this.keys.doc(documentName(tenant, id)), 'nchunks', 'chunks');
    const replies = (await redisCall(() => p.exec())) ?? [];
    return ids.map((_, i) => {
      const [err, value] = replies[i] ?? [null, null];
      if (err) throw new UnavailableError(`Redis is unavailable: ${errorMessage(err)}`);
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

  /** List documents indexed before the document list existed (a SCAN over doc hashes). Returns how many. */
  async backfillDocList(): Promise<number> {
    let cursor = '0';
    let added = 0;
    const prefix = this.keys.doc('');
    do {
      const [next, found] = await redisCall(() =>
        this.redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1_000),
      );
      cursor = next;
      const keys = found
        .map((k) => {
          try {
            const ref = parseDocumentName(k.slice(prefix.length));
            return listKey(ref.tenant, ref.id);
          } catch {
            return null;
          }
        })
        .filter((k): k is string => k !== null);
      if (keys.length) {
        added += await redisCall(() =>
          this.redis.zadd(this.keys.docList, 'NX', ...keys.flatMap((k) => [0, k])),
        );
      }
    } while (cursor !== '0');
    return added;
  }

  // ----- used by the precompute worker -----------------------------------------------------------------

  /** Under the chunk's lock: still referenced? If not, it leaves the pending state (precompute-begin.lua). */
  async beginPrecompute(key: string): Promise<boolean> {
    const keys = [this.keys.refs(key), this.keys.chunk(key), this.keys.pending];
    return (await redisCall(() => this.script('precompute-begin', keys, [key]))) === 1;
  }

  async markReady(
    key: string,
    fingerprint: string,
    result: Pick<PrecomputeJobResult, 'bytes' | 'written'>,
  ): Promise<void> {
    const keys = [this.keys.chunk(key), this.keys.pending, this.keys.failed];
    const now = new Date().toISOString();
    await redisCall(() =>
      this.script('mark-ready', keys, [fingerprint, result.bytes, result.written, now, key]),
    );
  }

  async markFailed(key: string, message: string): Promise<void> {
    const keys = [this.keys.chunk(key), this.keys.pending, this.keys.failed];
    const args = [message.slice(0, 1000), new Date().toISOString(), key, Date.now()];
    await redisCall(() => this.script('mark-failed', keys, args));
  }

  /** Chunk hash fields (state, bytes stored and written, token count), for the batch summary and tests. */
  async chunkInfo(
    keys: string[],
  ): Promise<Map<string, { state: ChunkState | null; written: number; bytes: number; tokens: number }>> {
    const out = new Map<
      string,
      { state: ChunkState | null; written: number; bytes: number; tokens: number }
    >();
    if (keys.length === 0) return out;
    const p = this.redis.pipeline();
    for (const k of keys) p.hmget(this.keys.chunk(k), 'state', 'written', 'bytes', 'ntokens');
    const replies = (await redisCall(() => p.exec())) ?? [];
    keys.forEach((k, i) => {
      const [state, written, bytes, tokens] = (replies[i]?.[1] ?? []) as (string | null)[];
      out.set(k, {
        state: state as ChunkState | null,
        written: Number(written ?? 0),
        bytes: Number(bytes ?? 0),
        tokens: Number(tokens ?? 0),
      });
    });
    return out;
  }

  /** Run `fn` holding the chunk's lock; null (fn not run) when another process holds it past `waitMs`. */
  tryWithChunkLock<T>(key: string, waitMs: number, fn: () => Promise<T>): Promise<{ value: T } | null> {
    return this.locks.tryWith(this.keys.lock(key), waitMs, fn);
  }

  /** The script caller (the reconciler shares it). */
  get scripts(): ScriptCaller {
    return this.script;
  }

  get client(): RedisClient {
    return this.redis;
  }
}
