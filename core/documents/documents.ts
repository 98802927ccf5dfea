/**
 * Documents and the chunk bookkeeping behind them.
 *
 * Object store: `docs/<id>.json` (the manifest, see manifest.ts) and `kv/…` (chunk caches, chunkObjectKey).
 * Redis: the keys in keys.ts, changed by the scripts in lua/ (scripts.ts).
 *
 * A document's status is computed when asked, from its chunks' states: ready when all are ready, failed
 * when any failed, pending otherwise. Reference changes happen in Lua scripts (atomic); writing and
 * deleting a chunk's object happen under the chunk's lock, and both re-check the references inside it,
 * so an ingest racing a delete of the same chunk ends with the object present and the chunk pending or
 * ready, never "ready" with no object (see `collect`). The scripts touch keys they compute from the
 * prefix, so this needs a single Redis, not Redis Cluster.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { InvalidArgumentError, NotFoundError, UnavailableError, errorMessage } from '../errors.js';
import { chunkKey, chunkObjectKey } from '../kv/format.js';
import {
  PRECOMPUTE_JOB,
  type BlendChunkRef,
  type PrecomputeJobData,
  type PrecomputeJobResult,
} from '../queue/contracts.js';
import { redisCall } from '../queue/redis.js';
import type { ObjectStore } from '../storage/types.js';
import {
  DOCUMENT_ID_RE,
  decodeManifest,
  encodeManifest,
  manifestObjectKey,
  type DocumentManifest,
} from './manifest.js';
import { silentLogger, type Logger } from '../ops/log.js';
import { CORPUS_LOG_LENGTH, DocumentKeys } from './keys.js';
import { documentScripts } from './scripts.js';
import type { ModelIdentity } from './text.js';

export type ChunkState = 'pending' | 'ready' | 'failed' | 'deleting';
export type DocumentState = 'pending' | 'ready' | 'failed';

export interface DocumentInput {
  id?: string;
  text?: string;
  chunks?: string[];
  metadata?: Record<string, unknown>;
}

export type { ModelIdentity } from './text.js';

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
  status: Exclude<ChunkState, 'deleting'>;
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

/** A document in a listing: its status without the per-chunk list (`chunks` is the count). */
export type DocumentSummary = Omit<DocumentStatus, 'chunks'> & { chunks: number };

export const PRECOMPUTE_JOB_OPTIONS = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1_000 },
  removeOnComplete: true,
  removeOnFail: true,
} as const;

const LOCK_TTL_MS = 120_000;

function parseList(json: string): string[] {
  const v = JSON.parse(json) as unknown;
  return Array.isArray(v) ? (v as string[]) : []; // cjson encodes an empty table as {}
}

export class DocumentService {
  readonly keys: DocumentKeys;
  private readonly script: ReturnType<typeof documentScripts>;

  constructor(
    private readonly redis: Redis,
    private readonly store: ObjectStore,
    private readonly precomputeQueue: Queue | null,
    keyPrefix: string,
    private readonly log: Logger = silentLogger,
  ) {
    this.keys = new DocumentKeys(keyPrefix);
    this.script = documentScripts(redis);
  }

  /** Chunk a document (text or explicit chunks) and compute each chunk's key; throws InvalidArgumentError. */
  async prepare(
    input: DocumentInput,
    model: ModelIdentity,
    budget: number,
  ): Promise<{ id: string; chunks: { key: string; text: string; tokenIds: number[] }[] }> {
    const id = input.id ?? randomUUID();
    if (!DOCUMENT_ID_RE.test(id))
      throw new InvalidArgumentError(`id: invalid document id ${JSON.stringify(id)}`);
    const pieces = await model.chunkDocument({ text: input.text, chunks: input.chunks }, budget);
    return { id, chunks: pieces.map((c) => ({ ...c, key: chunkKey(model.fingerprint, c.tokenIds) })) };
  }

  /**
   * Store a document (replacing one with the same id) and enqueue precompute jobs for its chunks that are
   * not ready. Writes the manifest first, so Redis never names a document the store does not describe.
   */
  async ingest(
    input: DocumentInput,
    model: ModelIdentity,
    budget: number,
    opts: { requestId?: string } = {},
  ): Promise<IngestResult> {
    const { id, chunks } = await this.prepare(input, model, budget);
    const keys = chunks.map((c) => c.key);
    const keysJson = JSON.stringify(keys);
    const metaJson = JSON.stringify(input.metadata ?? {});
    const existing = await redisCall(() =>
      this.redis.hmget(this.keys.doc(id), 'chunks', 'meta', 'createdAt'),
    );
    const changed = existing[0] !== keysJson || existing[1] !== metaJson;
    const now = new Date().toISOString();
    if (changed) {
      const manifest: DocumentManifest = {
        version: 1,
        id,
        fingerprint: model.fingerprint,
        createdAt: existing[2] ?? now,
        updatedAt: now,
        metadata: input.metadata ?? {},
        chunks,
      };
      await this.store.put(manifestObjectKey(id), encodeManifest(manifest));
    }
    const toks = chunks.map((c) => [JSON.stringify(c.tokenIds), String(c.tokenIds.length)]);
    const [enqueueJson, readyJson, orphansJson] = (await redisCall(() =>
      this.script(
        'ingest',
        [this.keys.doc(id), this.keys.gc, this.keys.docList, this.keys.corpusLog],
        [
          this.keys.prefix,
          id,
          now,
          metaJson,
          keysJson,
          JSON.stringify(toks),
          model.fingerprint,
          CORPUS_LOG_LENGTH,
        ],
      ),
    )) as [string, string, string];
    const enqueued = parseList(enqueueJson);
    const byKey = new Map(chunks.map((c) => [c.key, c]));
    await this.enqueue(
      enqueued.map((k) => ({
        key: k,
        fingerprint: model.fingerprint,
        tokenIds: byKey.get(k)!.tokenIds,
        ...(opts.requestId && { requestId: opts.requestId }),
      })),
    );
    const orphans = parseList(orphansJson);
    if (orphans.length > 0) await this.collect(orphans, 5_000);
    return { id, chunks: chunks.length, keys, enqueued, alreadyReady: parseList(readyJson), changed };
  }

  /** Add precompute jobs (job id = chunk key: a job already waiting or running for a chunk is reused). */
  async enqueue(jobs: PrecomputeJobData[]): Promise<void> {
    if (jobs.length === 0) return;
    if (!this.precomputeQueue) throw new UnavailableError('no precompute queue configured');
    await redisCall(
      () =>
        this.precomputeQueue!.addBulk(
          jobs.map((data) => ({
            name: PRECOMPUTE_JOB,
            data,
            opts: { jobId: data.key, ...PRECOMPUTE_JOB_OPTIONS },
          })),
        ),
      'Redis (precompute queue)',
    );
  }

  async status(id: string): Promise<DocumentStatus | null> {
    const doc = await redisCall(() => this.redis.hgetall(this.keys.doc(id)));
    if (!doc.chunks) return null;
    const keys = parseList(doc.chunks);
    const unique = [...new Set(keys)];
    const pipeline = this.redis.pipeline();
    for (const k of unique) pipeline.hmget(this.keys.chunk(k), 'state', 'ntokens', 'error');
    const replies = (await redisCall(() => pipeline.exec())) ?? [];
    const info = new Map<string, { state: ChunkState; ntokens: number; error?: string }>();
    unique.forEach((k, i) => {
      const [err, value] = replies[i] ?? [null, []];
      if (err) throw new UnavailableError(`Redis is unavailable: ${errorMessage(err)}`);
      const [state, ntokens, error] = value as (string | null)[];
      info.set(k, {
        state: (state as ChunkState) ?? 'pending',
        ntokens: Number(ntokens ?? 0),
        error: error ?? undefined,
      });
    });
    const chunks: ChunkStatus[] = keys.map((key, index) => {
      const c = info.get(key)!;
      const status = c.state === 'deleting' ? 'pending' : c.state;
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

  /** Remove a document; chunk objects no other document references are deleted. Null when unknown. */
  async remove(id: string, lockWaitMs = 5_000): Promise<{ chunksDeleted: number } | null> {
    const exists = await redisCall(() => this.redis.exists(this.keys.doc(id)));
    if (!exists) return null;
    await this.store.delete(manifestObjectKey(id));
    const res = (await redisCall(() =>
      this.script(
        'delete',
        [this.keys.doc(id), this.keys.gc, this.keys.docList, this.keys.corpusLog],
        [this.keys.prefix, id, CORPUS_LOG_LENGTH],
      ),
    )) as string | null;
    if (res === null) return null; // deleted concurrently
    return { chunksDeleted: await this.collect(parseList(res), lockWaitMs) };
  }

  /**
   * Delete the objects of unreferenced chunks, each under its lock. Chunks whose lock cannot be taken in
   * `lockWaitMs`, or whose deletion fails, stay in the gc set for `sweep` to retry. Returns how many
   * objects were deleted.
   */
  async collect(keys: string[], lockWaitMs = 5_000): Promise<number> {
    let deleted = 0;
    for (const key of keys) {
      try {
        const gcKeys = [this.keys.refs(key), this.keys.chunk(key), this.keys.gc];
        const done = await this.withChunkLock(key, lockWaitMs, async () => {
          const fp = (await redisCall(() => this.script('gc-begin', gcKeys, [key]))) as string | null;
          if (fp === null) return false; // referenced again: keep it
          if (/^[0-9a-f]{64}$/.test(fp)) await this.store.delete(chunkObjectKey(fp, key));
          await redisCall(() => this.script('gc-end', gcKeys, [key]));
          return true;
        });
        if (done) deleted++;
      } catch (err) {
        this.log.warn('chunk garbage collection deferred', { key, error: errorMessage(err) });
      }
    }
    return deleted;
  }

  /** Retry garbage collection of every chunk left in the gc set. */
  async sweep(lockWaitMs = 1_000): Promise<number> {
    const keys = await redisCall(() => this.redis.smembers(this.keys.gc));
    return keys.length ? this.collect(keys, lockWaitMs) : 0;
  }

  /** The chunks of the given documents, in order, with their token ids. NotFoundError names unknown ids. */
  async chunkRefs(ids: string[]): Promise<BlendChunkRef[]> {
    return (await this.chunkRefsByDocument(ids)).flat();
  }

  /** Each document's chunks, in order, with their token ids. NotFoundError names unknown ids. */
  async chunkRefsByDocument(ids: string[]): Promise<BlendChunkRef[][]> {
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hget(this.keys.doc(id), 'chunks');
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

  /** A document's chunk keys in order (Redis, the live truth), or null when it does not exist. */
  async chunkKeysOf(id: string): Promise<string[] | null> {
    const v = await redisCall(() => this.redis.hget(this.keys.doc(id), 'chunks'));
    return v == null ? null : parseList(v);
  }

  /** A document's manifest from the object store, or null when there is none. */
  async manifest(id: string): Promise<DocumentManifest | null> {
    const buf = await this.store.get(manifestObjectKey(id));
    return buf ? decodeManifest(buf) : null;
  }

  /**
   * One page of documents in id order, each with its status (chunk list left out): up to `limit` ids after
   * `cursor` (exclusive), and the cursor of the next page (null on the last).
   */
  async list(opts: {
    cursor?: string;
    limit: number;
  }): Promise<{ documents: DocumentSummary[]; nextCursor: string | null }> {
    const from = opts.cursor === undefined ? '-' : `(${opts.cursor}`;
    const ids = await redisCall(() =>
      this.redis.zrangebylex(this.keys.docList, from, '+', 'LIMIT', 0, opts.limit + 1),
    );
    const page = ids.slice(0, opts.limit);
    const statuses = await Promise.all(page.map((id) => this.status(id)));
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

  /** Every document id, in id order, a page at a time. */
  async *allIds(pageSize = 1_000): AsyncGenerator<string[]> {
    let from = '-';
    for (;;) {
      const ids = await redisCall(() =>
        this.redis.zrangebylex(this.keys.docList, from, '+', 'LIMIT', 0, pageSize),
      );
      if (ids.length > 0) yield ids;
      if (ids.length < pageSize) return;
      from = `(${ids[ids.length - 1]}`;
    }
  }

  /** List documents stored before the document list existed (a SCAN over doc hashes). Returns how many. */
  async backfillDocList(): Promise<number> {
    let cursor = '0';
    let added = 0;
    const prefix = this.keys.doc('');
    do {
      const [next, found] = await redisCall(() =>
        this.redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1_000),
      );
      cursor = next;
      const ids = found.map((k) => k.slice(prefix.length)).filter((id) => DOCUMENT_ID_RE.test(id));
      if (ids.length) {
        added += await redisCall(() =>
          this.redis.zadd(this.keys.docList, 'NX', ...ids.flatMap((id) => [0, id])),
        );
      }
    } while (cursor !== '0');
    return added;
  }

  // ----- used by the precompute worker -----------------------------------------------------------------

  async isReferenced(key: string): Promise<boolean> {
    return (await redisCall(() => this.redis.scard(this.keys.refs(key)))) > 0;
  }

  async markReady(
    key: string,
    fingerprint: string,
    result: Pick<PrecomputeJobResult, 'bytes' | 'written'> & { tokens?: number },
  ): Promise<void> {
    await redisCall(() =>
      this.redis
        .multi()
        .hset(this.keys.chunk(key), {
          state: 'ready',
          fp: fingerprint,
          bytes: String(result.bytes),
          written: String(result.written),
          tokens: String(result.tokens ?? 0),
          updatedAt: new Date().toISOString(),
        })
        .hdel(this.keys.chunk(key), 'error')
        .exec(),
    );
  }

  async markFailed(key: string, message: string): Promise<void> {
    await redisCall(() =>
      this.script('mark-failed', [this.keys.chunk(key)], [message.slice(0, 1000), new Date().toISOString()]),
    );
  }

  /** Chunk hash fields, for the batch summary and tests. */
  /** Each chunk's state, bytes stored and written, and tokens computed (0 unless this run computed it). */
  async chunkInfo(
    keys: string[],
  ): Promise<Map<string, { state: ChunkState | null; written: number; bytes: number; tokens: number }>> {
    const out = new Map<
      string,
      { state: ChunkState | null; written: number; bytes: number; tokens: number }
    >();
    if (keys.length === 0) return out;
    const p = this.redis.pipeline();
    for (const k of keys) p.hmget(this.keys.chunk(k), 'state', 'written', 'bytes', 'tokens');
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

  /**
   * Run `fn` holding the chunk's lock (SET NX with a TTL, renewed while held). Waits up to `waitMs` for
   * the lock, then throws UnavailableError.
   */
  async withChunkLock<T>(key: string, waitMs: number, fn: () => Promise<T>): Promise<T> {
    const lock = this.keys.lock(key);
    const token = randomBytes(12).toString('hex');
    const deadline = Date.now() + waitMs;
    for (;;) {
      const ok = await redisCall(() => this.redis.set(lock, token, 'PX', LOCK_TTL_MS, 'NX'));
      if (ok === 'OK') break;
      if (Date.now() >= deadline) throw new UnavailableError(`chunk ${key} is locked by another process`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const renew = setInterval(() => {
      this.script('extend-lock', [lock], [token, LOCK_TTL_MS]).catch(() => undefined);
    }, LOCK_TTL_MS / 3);
    try {
      return await fn();
    } finally {
      clearInterval(renew);
      await this.script('unlock', [lock], [token]).catch(() => undefined);
    }
  }
}
