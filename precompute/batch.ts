/**
 * Batch precompute: `npm run precompute -- [options] <folder or file>...`
 *
 * Ingests every .txt/.md file (folders are walked recursively) as a document, exactly as
 * POST /v1/documents does (same chunking, manifest, references, one precompute job per chunk not yet
 * stored), waits until every chunk is stored, and prints a summary. Re-running on the same files does no
 * new work: their documents and chunks are already there.
 *
 * By default a precompute worker runs inside this process (one machine: nothing else to start). With
 * --remote it only enqueues and waits, relying on `npm run precompute-worker` / `npm start` elsewhere.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { loadConfig, type Config } from '../core/config/index.js';
import { CacheBlendError, InvalidArgumentError, errorMessage } from '../core/errors.js';
import { PRECOMPUTE_QUEUE } from '../core/queue/contracts.js';
import { checkRedisDurability } from '../core/queue/durability.js';
import { closeRedis, createRedis, keyPrefix, waitForRedis, type RedisClient } from '../core/queue/redis.js';
import { withTimeout } from '../core/util/time.js';
import { DocumentService } from '../core/documents/documents.js';
import type { EngineThreadInit } from '../core/inference/engine-handlers.js';
import { createLogger, type Logger } from '../core/ops/log.js';
import { runIfEntryPoint } from '../core/ops/process.js';
import { ensureRedis, type RedisLaunch } from '../core/ops/redis-launcher.js';
import { startTextThread, type ModelIdentity } from '../core/documents/text.js';
import { openObjectStore } from '../core/storage/index.js';
import type { ObjectStore } from '../core/storage/types.js';
import { collectFiles, documentIdFor } from './batch-files.js';
import {
  ProgressReport,
  formatSummary,
  summarize,
  type BatchSummary,
  type ChunkInfo,
  type Ingested,
  type Progress,
} from './batch-report.js';
import { startPrecomputeWorker, type PrecomputeWorker } from './precompute-worker.js';

export type { BatchSummary } from './batch-report.js';

const USAGE = `usage: cacheblend precompute [--remote] [--id-prefix P] [--timeout SECONDS] [--json] <folder or file>...

  Ingests every .txt/.md file as a document and precomputes its chunks' KV caches.
  --remote      don't run a precompute worker here; rely on workers started elsewhere
  --id-prefix   prefix for document ids (ids are the files' paths relative to the folder)
  --timeout     give up waiting after this many seconds (default 3600)
  --json        print the summary as one JSON object`;

export interface BatchOptions {
  config?: Config;
  out?: (s: string) => void;
  /** Progress output; a TTY gets a redrawn bar, anything else plain lines. */
  progress?: Progress;
  threadInit?: Partial<EngineThreadInit>;
  log?: Logger;
}

interface BatchArgs {
  inputs: string[];
  remote: boolean;
  idPrefix: string;
  timeoutS: number;
  json: boolean;
}

/** The command line, or the exit code to return at once (help printed, or a usage error reported). */
function parseBatchArgs(argv: string[], out: (s: string) => void, progress: Progress): BatchArgs | number {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        remote: { type: 'boolean' },
        'id-prefix': { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    progress.write(`precompute: ${errorMessage(err)}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out(`${USAGE}\n`);
    return 0;
  }
  if (positionals.length === 0) {
    progress.write(`precompute: name at least one folder or file\n${USAGE}\n`);
    return 2;
  }
  const timeoutS = values.timeout === undefined ? 3600 : Number(values.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
    progress.write(`precompute: --timeout must be a positive number of seconds\n`);
    return 2;
  }
  return {
    inputs: positionals,
    remote: values.remote ?? false,
    idPrefix: values['id-prefix'] ?? '',
    timeoutS,
    json: values.json ?? false,
  };
}

/** Ingest every file as a document, as POST /v1/documents does; files that can't be chunked are skipped. */
async function ingestFiles(
  files: { file: string; rel: string }[],
  docs: DocumentService,
  model: ModelIdentity,
  args: BatchArgs,
  config: Config,
  progress: Progress,
): Promise<Ingested> {
  const out: Ingested = { docKeys: [], enqueued: new Set(), alreadyReady: new Set() };
  for (const f of files) {
    const text = await readFile(f.file, 'utf8');
    const id = documentIdFor(f.rel, args.idPrefix);
    let r;
    try {
      r = await docs.ingest(
        { id, text, metadata: { source: f.rel, bytes: Buffer.byteLength(text) } },
        model,
        { budget: config.chunkTokenBudget },
      );
    } catch (err) {
      if (!(err instanceof InvalidArgumentError)) throw err;
      progress.write(`precompute: skipping ${f.rel}: ${err.message}\n`);
      continue;
    }
    out.docKeys.push(r.keys);
    for (const k of r.enqueued) if (!out.alreadyReady.has(k)) out.enqueued.add(k);
    for (const k of r.alreadyReady) if (!out.enqueued.has(k)) out.alreadyReady.add(k);
  }
  return out;
}

/** Poll the enqueued chunks until each is ready or failed, or the deadline passes (`pending` > 0). */
async function waitForChunks(
  docs: DocumentService,
  ingested: Ingested,
  report: ProgressReport,
  deadline: number,
): Promise<{ info: ChunkInfo; pending: number }> {
  const keys = [...ingested.enqueued];
  const total = new Set(ingested.docKeys.flat()).size;
  for (;;) {
    const info = await docs.chunkInfo(keys);
    const state = (k: string) => info.get(k)?.state;
    const done = keys.filter((k) => state(k) === 'ready' || state(k) === 'failed').length;
    const written = keys.reduce((a, k) => a + (info.get(k)?.written ?? 0), 0);
    report.update(ingested.alreadyReady.size + done, total, done, written);
    if (done === keys.length || Date.now() > deadline) return { info, pending: keys.length - done };
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Connections and threads the batch holds; close() releases whatever was opened. */
class BatchResources {
  worker?: PrecomputeWorker;
  textThread?: Awaited<ReturnType<typeof startTextThread>>;
  readonly redis: RedisClient;
  readonly store: ObjectStore;
  readonly queue: Queue;
  readonly docs: DocumentService;

  private constructor(
    readonly config: Config,
    readonly log: Logger,
    private readonly redisLaunch: RedisLaunch,
  ) {
    this.redis = createRedis(config, 'producer');
    this.store = openObjectStore(config.kvStoreUrl, { s3: config.s3 });
    this.queue = new Queue(PRECOMPUTE_QUEUE, {
      connection: this.redis,
      prefix: keyPrefix(config.queuePrefix),
    });
    this.queue.on('error', () => undefined);
    this.docs = new DocumentService(
      this.redis,
      this.store,
      this.queue,
      config.queuePrefix,
      log,
      config.precomputeAttempts,
      config.jobHistory,
    );
  }

  static async open(config: Config, log: Logger): Promise<BatchResources> {
    return new BatchResources(config, log, await ensureRedis(config, log));
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.textThread?.close();
    await withTimeout(this.queue.close(), 2_000, 'closing the queue').catch(() => undefined);
    await closeRedis(this.redis);
    await this.store.close();
    await this.redisLaunch.stop();
  }
}

export async function precomputeBatch(
  argv: string[],
  opts: BatchOptions = {},
): Promise<{ code: number; summary?: BatchSummary }> {
  const out = opts.out ?? ((s: string) => process.stdout.write(s));
  const progress = opts.progress ?? process.stderr;
  const args = parseBatchArgs(argv, out, progress);
  if (typeof args === 'number') return { code: args };
  const t0 = performance.now();
  const config = opts.config ?? loadConfig();
  const log = opts.log ?? createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'precompute');
  const files = await collectFiles(args.inputs).catch((err: unknown) => {
    progress.write(`precompute: ${errorMessage(err)}\n`);
    return null;
  });
  if (!files) return { code: 2 };
  if (files.length === 0) {
    progress.write('precompute: no .txt or .md files found\n');
    return { code: 2 };
  }
  const res = await BatchResources.open(config, log);
  try {
    await waitForRedis(res.redis, 10_000);
    await checkRedisDurability(res.redis, config.redisRequireDurable, log);
    await withTimeout(res.store.ping(), 10_000, 'object store ping');
    // Chunking runs on its own thread: the local worker's lock renewals must not wait for a big file.
    res.textThread = await startTextThread({ model: config.model, modelSource: config.modelSource });
    if (!args.remote) res.worker = await startPrecomputeWorker({ config, log, threadInit: opts.threadInit });
    const ingested = await ingestFiles(files, res.docs, res.textThread.identity, args, config, progress);
    const report = new ProgressReport(progress, t0, args.remote);
    const { info, pending } = await waitForChunks(
      res.docs,
      ingested,
      report,
      Date.now() + args.timeoutS * 1000,
    );
    report.end();
    if (pending > 0) {
      progress.write(`precompute: gave up after ${args.timeoutS} s with ${pending} chunks pending\n`);
      return { code: 1 };
    }
    const summary = summarize(ingested, info, t0);
    out(args.json ? `${JSON.stringify(summary)}\n` : formatSummary(summary));
    return { code: summary.failed > 0 ? 1 : 0, summary };
  } catch (err) {
    progress.write(`precompute: ${err instanceof CacheBlendError ? err.message : errorMessage(err)}\n`);
    return { code: 1 };
  } finally {
    await res.close();
  }
}

runIfEntryPoint(
  import.meta.url,
  'precompute',
  async () => (await precomputeBatch(process.argv.slice(2))).code,
);
