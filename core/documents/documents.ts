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
 * This file holds a document's writes (ingest, restore, remove); the reads (status, listings, chunk lists)
 * are in document-reads.ts, precompute jobs in precompute-jobs.ts, chunk state changes in chunk-lifecycle.ts,
 * garbage collection in chunk-gc.ts and the shapes in types.ts.
 */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { DEFAULT_JOB_HISTORY, DEFAULT_TENANT, type JobHistory } from '../config/index.js';
import { chunkKey } from '../kv/format.js';
import { redisCall, type RedisClient } from '../queue/redis.js';
import type { ObjectStore } from '../storage/types.js';
import { encodeManifest, manifestObjectKey, type DocumentManifest, type ManifestChunk } from './manifest.js';
import { silentLogger, type Logger } from '../ops/log.js';
import { ChunkCollector } from './chunk-gc.js';
import { ChunkLifecycle } from './chunk-lifecycle.js';
import { DocumentReads, parseList } from './document-reads.js';
import { indexHandle } from './index-handle.js';
import { CORPUS_LOG_LENGTH } from './keys.js';
import type { RedisLocks } from './locks.js';
import { documentName, listKey } from './names.js';
import { PrecomputeJobs } from './precompute-jobs.js';
import type { ScriptCaller } from './scripts.js';
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
  /** The precompute queue's side: jobs for chunks that need computing. */
  readonly jobs: PrecomputeJobs;
  /** Deletes the objects of chunks no document references. */
  readonly gc: ChunkCollector;
  /** Chunk state changes for the precompute worker and the reconciler. */
  readonly lifecycle: ChunkLifecycle;
  private readonly script: ScriptCaller;

  constructor(
    redis: RedisClient,
    store: ObjectStore,
    precomputeQueue: Queue | null,
    queuePrefix: string,
    log: Logger = silentLogger,
    precomputeAttempts = 12,
    jobHistory: JobHistory = DEFAULT_JOB_HISTORY,
  ) {
    const h = indexHandle(redis, store, queuePrefix, log);
    super(redis, store, h.keys);
    this.script = h.script;
    this.locks = h.locks;
    this.jobs = new PrecomputeJobs(redis, precomputeQueue, precomputeAttempts, jobHistory);
    this.gc = new ChunkCollector(h);
    this.lifecycle = new ChunkLifecycle(h);
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
    if (r.orphans.length > 0) await this.gc.collect(r.orphans, 5_000);
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
    await this.jobs.enqueue(
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
      if (r.orphans.length > 0) await this.gc.collect(r.orphans, 5_000);
      return { restored: true, enqueued: r.enqueued.length };
    });
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
    return { chunksDeleted: await this.gc.collect(orphans, lockWaitMs) };
  }
}
