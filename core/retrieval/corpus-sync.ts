/**
 * Keeps an API process's ranking index (CorpusIndex) following the corpus that Redis and the object store
 * hold. Every ingest and delete appends `{op, doc}` to the change log (a Redis Stream, written by the same
 * Lua script that changes the document, so no change goes unlogged); each process tails it with a blocking
 * XREAD on a connection of its own and re-reads the documents named there. On start — and after losing
 * Redis, when entries may have been trimmed meanwhile — it rebuilds from the document list and the
 * manifests, having first noted the log's last entry, so changes made during the rebuild are replayed.
 *
 * Documents are known by their names (core/documents/names.ts: `<tenant>/<id>`, or `<id>` for the default
 * tenant), so one index serves every tenant and retrieval filters by tenant.
 *
 * Syncing a document is idempotent: it reads the document's current chunk keys (Redis) and, when they
 * differ from the indexed ones, its manifest (chunk texts). A manifest that does not match Redis yet
 * belongs to an ingest or delete in progress, whose log entry follows.
 */
import { backfillDocList } from '../documents/doc-list-backfill.js';
import type { DocumentService } from '../documents/documents.js';
import { UnavailableError, errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../ops/log.js';
import { closeRedis, type RedisClient } from '../queue/redis.js';
import { withTimeout } from '../util/time.js';
import { CorpusIndex } from './corpus-index.js';

const BLOCK_MS = 5_000;
const RETRY_MS = 1_000;
/** Manifests read at once while rebuilding. */
const REBUILD_CONCURRENCY = 8;

function sameKeys(a: readonly string[] | undefined, b: readonly string[]): boolean {
  return a !== undefined && a.length === b.length && a.every((k, i) => k === b[i]);
}

async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]);
  });
  await Promise.all(lanes);
}

/** Order of two stream ids (`<ms>-<seq>`). */
function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  return am !== bm ? (am < bm ? -1 : 1) : as === bs ? 0 : as < bs ? -1 : 1;
}

export class CorpusSync {
  readonly index = new CorpusIndex();
  /** Resolves once the first rebuild has finished. */
  readonly ready: Promise<void>;
  private lastId = '0-0';
  private stopped = false;
  private readonly running: Promise<void>;

  /** `tail` is a connection of its own (it blocks in XREAD), closed by stop(). */
  constructor(
    private readonly docs: DocumentService,
    private readonly tail: RedisClient,
    private readonly log: Logger = silentLogger,
  ) {
    let markReady!: () => void;
    this.ready = new Promise((resolve) => (markReady = resolve));
    this.running = this.run(markReady);
  }

  /** Wait (at most `ms`) until the index has been built once. */
  async whenReady(ms: number): Promise<void> {
    await withTimeout(this.ready, ms, () => new UnavailableError('the corpus index is still being built'));
  }

  /** Bring one document (by name) up to date in the index now (read-your-writes after an ingest or delete). */
  async syncDocument(id: string): Promise<void> {
    const keys = await this.docs.chunkKeysOf(id);
    if (!keys) {
      this.index.remove(id);
      return;
    }
    if (sameKeys(this.index.keysOf(id), keys)) return;
    const manifest = await this.docs.manifest(id);
    if (
      !manifest ||
      !sameKeys(
        manifest.chunks.map((c) => c.key),
        keys,
      )
    )
      return;
    this.index.set(
      id,
      manifest.chunks.map((c) => ({ key: c.key, text: c.text, tokens: c.tokenIds.length })),
    );
  }

  /** Sync a document unless the index already holds exactly these chunk keys for it. */
  async ensureCurrent(id: string, keys: readonly string[]): Promise<void> {
    if (!sameKeys(this.index.keysOf(id), keys)) await this.syncDocument(id);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await closeRedis(this.tail);
    // A command queued while Redis is away may never settle; the loop ends at its next check either way.
    await withTimeout(this.running, 2_000, 'corpus index stop').catch(() => undefined);
  }

  private async run(markReady: () => void): Promise<void> {
    let built = false;
    while (!this.stopped) {
      try {
        if (!built) {
          await this.rebuild();
          built = true;
          markReady();
        }
        await this.follow();
      } catch (err) {
        if (this.stopped) return;
        this.log.warn('corpus index: lost the change log; rebuilding', { error: errorMessage(err) });
        built = false;
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  }

  /** Index every listed document; drop documents no longer listed. */
  private async rebuild(): Promise<void> {
    const t0 = performance.now();
    // Note the log position first: whatever changes during the rebuild is replayed after it.
    this.lastId = await this.docs.corpusLogHead();
    await backfillDocList(this.tail, this.docs.keys);
    const listed = new Set<string>();
    for await (const names of this.docs.allNames()) {
      if (this.stopped) return;
      names.forEach((name) => listed.add(name));
      await forEachLimit(names, REBUILD_CONCURRENCY, (name) => this.syncDocument(name));
    }
    for (const id of this.index.documents()) if (!listed.has(id)) this.index.remove(id);
    this.log.info('corpus index built', {
      documents: this.index.documentCount,
      chunks: this.index.chunkCount,
      ms: Math.round(performance.now() - t0),
    });
  }

  /**
   * True when the log no longer holds the last entry applied: it was trimmed past this process (more than
   * CORPUS_LOG_LENGTH changes behind), so entries after it may be lost.
   */
  private async trimmedPast(): Promise<boolean> {
    if (this.lastId === '0-0') return false;
    const first = await this.tail.xrange(this.docs.keys.corpusLog, '-', '+', 'COUNT', 1);
    return first.length > 0 && compareIds(first[0][0], this.lastId) > 0;
  }

  /** Apply change-log entries as they come, until stopped (or a Redis error, which the caller handles). */
  private async follow(): Promise<void> {
    while (!this.stopped) {
      const reply = (await this.tail.xread(
        'COUNT',
        1_000,
        'BLOCK',
        BLOCK_MS,
        'STREAMS',
        this.docs.keys.corpusLog,
        this.lastId,
      )) as [string, [string, string[]][]][] | null;
      const entries = reply?.[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      if (await this.trimmedPast()) throw new Error('the change log was trimmed past this process');
      // Syncing reads the current state, so a document named several times is synced once.
      const changed = new Set<string>();
      for (const [, fields] of entries) {
        const at = fields.indexOf('doc');
        if (at >= 0 && at + 1 < fields.length) changed.add(fields[at + 1]);
      }
      await forEachLimit([...changed], REBUILD_CONCURRENCY, (id) => this.syncDocument(id));
      this.lastId = entries[entries.length - 1][0];
    }
  }
}
