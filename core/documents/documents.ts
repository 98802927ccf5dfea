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
 *
 * This file holds the writes; the reads (status, listings, chunk lists) are in document-reads.ts and the
 * shapes in types.ts.
 */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { DEFAULT_JOB_HISTORY, DEFAULT_TENANT, type JobHistory } from '../config/index.js';
import { UnavailableError, errorMessage, type ErrorData } from '../errors.js';
import { chunkKey, chunkObjectKey } from '../kv/format.js';
import {
  PRECOMPUTE_JOB,
  encodeFailure,
  precomputeJobId,
  precomputeJobOptions,
  type PrecomputeJobData,
  type PrecomputeJobResult,
} from '../queue/contracts.js';
import { redisCall, type RedisClient } from '../queue/redis.js';
import type { ObjectStore } from '../storage/types.js';
import { encodeManifest, manifestObjectKey, type DocumentManifest, type ManifestChunk } from './manifest.js';
import { silentLogger, type Logger } from '../ops/log.js';
import { DocumentReads, parseList } from './document-reads.js';
import { CORPUS_LOG_LENGTH, DocumentKeys } from './keys.js';
import { RedisLocks } from './locks.js';
import { documentName, listKey, parseDocumentName } from './names.js';
import { documentScripts, type ScriptCaller } from './scripts.js';
import type { ModelIdentity } from './text.js';
import type { DocumentInput, IngestOptions, IngestResult } from './types.js';

export type { ModelIdentity } from './text.js';

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

/** How long a document write waits for a concurrent write of the same document. */
const DOC_LOCK_WAIT_MS = 15_000;

/** Writes documents and their chunks' bookkeeping; the reads (status, listings, chunk lists) are inherited. */
export class DocumentService extends DocumentReads {
  readonly locks: RedisLocks;
  private readonly script: ScriptCaller;

  constructor(
    redis: RedisClient,
    store: ObjectStore,
    private readonly precomputeQueue: Queue | null,
    queuePrefix: string,
    private readonly log: Logger = silentLogger,
    private readonly precomputeAttempts = 12,
    private readonly jobHistory: JobHistory = DEFAULT_JOB_HISTORY,
  ) {
    super(redis, store, new DocumentKeys(queuePrefix));
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

  /**
   * Add precompute jobs; a job id that exists (the chunk's generation is queued or running) is kept. A job
   * of that id kept in the history (completed or failed) is removed first: the chunk is pending again, so
   * its job must run again.
   */
  async enqueue(jobs: { gen: number; data: PrecomputeJobData }[]): Promise<void> {
    if (jobs.length === 0) return;
    if (!this.precomputeQueue) throw new UnavailableError('no precompute queue configured');
    const opts = precomputeJobOptions(this.precomputeAttempts, this.jobHistory);
    await this.removeFinished(jobs.map(({ gen, data }) => precomputeJobId(data.key, gen)));
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

  /** Remove the jobs of these ids that sit in the queue's history (completed or failed). */
  private async removeFinished(ids: string[]): Promise<void> {
    const queue = this.precomputeQueue!;
    const p = this.redis.pipeline();
    for (const id of ids) p.zscore(queue.keys.completed, id).zscore(queue.keys.failed, id);
    const replies = (await redisCall(() => p.exec(), 'Redis (precompute queue)')) ?? [];
    const finished = ids.filter((_, i) => replies[2 * i]?.[1] != null || replies[2 * i + 1]?.[1] != null);
    for (const id of finished) await redisCall(() => queue.remove(id), 'Redis (precompute queue)');
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

  async markFailed(key: string, error: ErrorData): Promise<void> {
    const keys = [this.keys.chunk(key), this.keys.pending, this.keys.failed];
    const stored = encodeFailure({ ...error, message: error.message.slice(0, 1000) });
    const args = [stored, new Date().toISOString(), key, Date.now()];
    await redisCall(() => this.script('mark-failed', keys, args));
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
