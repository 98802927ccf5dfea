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
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { loadConfig, type Config } from '../core/config/index.js';
import { CacheBlendError, InvalidArgumentError, errorMessage } from '../core/errors.js';
import { PRECOMPUTE_QUEUE } from '../core/queue/contracts.js';
import { closeRedis, createRedis, waitForRedis } from '../core/queue/redis.js';
import { withTimeout } from '../core/util/timeout.js';
import { DocumentService } from '../core/documents/documents.js';
import type { EngineThreadInit } from '../core/inference/engine-handlers.js';
import { createLogger, type Logger } from '../core/ops/log.js';
import { DOCUMENT_ID_RE } from '../core/documents/manifest.js';
import { isEntryPoint } from '../core/ops/process.js';
import { ensureRedis } from '../core/ops/redis-launcher.js';
import { startTextThread } from '../core/documents/text.js';
import { openObjectStore } from '../core/storage/index.js';
import { startPrecomputeWorker, type PrecomputeWorker } from './precompute-worker.js';

const USAGE = `usage: npm run precompute -- [--remote] [--id-prefix P] [--timeout SECONDS] [--json] <folder or file>...

  Ingests every .txt/.md file as a document and precomputes its chunks' KV caches.
  --remote      don't run a precompute worker here; rely on workers started elsewhere
  --id-prefix   prefix for document ids (ids are the files' paths relative to the folder)
  --timeout     give up waiting after this many seconds (default 3600)
  --json        print the summary as one JSON object`;

export interface BatchSummary {
  documents: number;
  documentsReady: number;
  documentsFailed: number;
  chunks: number;
  distinctChunks: number;
  alreadyStored: number;
  computed: number;
  failed: number;
  bytesWritten: number;
  seconds: number;
}

export interface BatchOptions {
  config?: Config;
  out?: (s: string) => void;
  /** Progress output; a TTY gets a redrawn bar, anything else plain lines. */
  progress?: NodeJS.WriteStream | { write(s: string): unknown; isTTY?: boolean };
  threadInit?: Partial<EngineThreadInit>;
  log?: Logger;
}

const TEXT_EXT = new Set(['.txt', '.md']);

async function collectFiles(inputs: string[]): Promise<{ file: string; rel: string }[]> {
  const out: { file: string; rel: string }[] = [];
  const walk = async (dir: string, root: string) => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    );
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const full = path.join(dir, e.name);
      if (e.isDirectory()) await walk(full, root);
      else if (e.isFile() && TEXT_EXT.has(path.extname(e.name).toLowerCase())) {
        out.push({ file: full, rel: path.relative(root, full) });
      }
    }
  };
  for (const input of inputs) {
    let info;
    try {
      info = await stat(input);
    } catch {
      throw new InvalidArgumentError(`${input}: no such file or folder`);
    }
    if (info.isDirectory()) await walk(path.resolve(input), path.resolve(input));
    else out.push({ file: path.resolve(input), rel: path.basename(input) });
  }
  return out;
}

/** A document id from a relative path: `notes/a b.md` → `notes--a-b.md` (hashed when too long). */
export function documentIdFor(rel: string, prefix = ''): string {
  let id = `${prefix}${rel.split(path.sep).join('--')}`
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '');
  if (id.length > 128 || !DOCUMENT_ID_RE.test(id)) {
    const hash = createHash('sha256').update(rel).digest('hex').slice(0, 16);
    id = `${id.slice(0, 100).replace(/^[^A-Za-z0-9]+/, '') || 'doc'}-${hash}`;
  }
  return id;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export async function precomputeBatch(
  argv: string[],
  opts: BatchOptions = {},
): Promise<{ code: number; summary?: BatchSummary }> {
  const out = opts.out ?? ((s: string) => process.stdout.write(s));
  const progressStream = opts.progress ?? process.stderr;
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
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
    }));
  } catch (err) {
    progressStream.write(`precompute: ${errorMessage(err)}\n${USAGE}\n`);
    return { code: 2 };
  }
  if (values.help) {
    out(`${USAGE}\n`);
    return { code: 0 };
  }
  if (positionals.length === 0) {
    progressStream.write(`precompute: name at least one folder or file\n${USAGE}\n`);
    return { code: 2 };
  }
  const timeoutS = values.timeout === undefined ? 3600 : Number(values.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
    progressStream.write(`precompute: --timeout must be a positive number of seconds\n`);
    return { code: 2 };
  }

  const t0 = performance.now();
  const config = opts.config ?? loadConfig();
  const log = opts.log ?? createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'precompute');
  const files = await collectFiles(positionals).catch((err: unknown) => {
    progressStream.write(`precompute: ${errorMessage(err)}\n`);
    return null;
  });
  if (!files) return { code: 2 };
  if (files.length === 0) {
    progressStream.write('precompute: no .txt or .md files found\n');
    return { code: 2 };
  }

  const redisLaunch = await ensureRedis(config, log);
  const redis = createRedis(config.redisUrl, 'producer');
  const store = openObjectStore(config.kvStoreUrl, { s3: config.s3 });
  const queue = new Queue(PRECOMPUTE_QUEUE, { connection: redis, prefix: config.queuePrefix });
  queue.on('error', () => undefined);
  const docs = new DocumentService(redis, store, queue, config.queuePrefix, log);
  let worker: PrecomputeWorker | undefined;
  let textThread: Awaited<ReturnType<typeof startTextThread>> | undefined;
  try {
    await waitForRedis(redis, 10_000);
    await withTimeout(store.ping(), 10_000, 'object store ping');
    // Chunking runs on its own thread: the local worker's lock renewals must not wait for a big file.
    textThread = await startTextThread({ model: config.model, modelPath: [...config.modelPath] });
    const model = textThread.identity;
    if (!values.remote) worker = await startPrecomputeWorker({ config, log, threadInit: opts.threadInit });

    const docKeys: string[][] = [];
    const enqueued = new Set<string>();
    const alreadyReady = new Set<string>();
    for (const f of files) {
      const text = await readFile(f.file, 'utf8');
      const id = documentIdFor(f.rel, values['id-prefix'] ?? '');
      let r;
      try {
        r = await docs.ingest(
          { id, text, metadata: { source: f.rel, bytes: Buffer.byteLength(text) } },
          model,
          config.chunkTokenBudget,
        );
      } catch (err) {
        if (!(err instanceof InvalidArgumentError)) throw err;
        progressStream.write(`precompute: skipping ${f.rel}: ${err.message}\n`);
        continue;
      }
      docKeys.push(r.keys);
      for (const k of r.enqueued) if (!alreadyReady.has(k)) enqueued.add(k);
      for (const k of r.alreadyReady) if (!enqueued.has(k)) alreadyReady.add(k);
    }
    const distinct = new Set(docKeys.flat());
    const keys = [...enqueued];

    // Wait, drawing progress.
    const tty = Boolean((progressStream as { isTTY?: boolean }).isTTY);
    const deadline = Date.now() + timeoutS * 1000;
    let lastLine = -1;
    let lastChange = Date.now();
    let lastDone = -1;
    let warned = false;
    let info = await docs.chunkInfo(keys);
    for (;;) {
      const done = keys.filter(
        (k) => info.get(k)?.state === 'ready' || info.get(k)?.state === 'failed',
      ).length;
      const written = keys.reduce((a, k) => a + (info.get(k)?.written ?? 0), 0);
      const total = distinct.size;
      const finished = alreadyReady.size + done;
      const fraction = total === 0 ? 1 : finished / total;
      const line = `${finished}/${total} chunks  ${formatBytes(written)} written  ${((performance.now() - t0) / 1000).toFixed(1)} s`;
      if (tty) {
        const width = 30;
        const filled = Math.round(fraction * width);
        progressStream.write(
          `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%  ${line}\x1b[K`,
        );
      } else {
        const step = Math.floor(fraction * 10);
        if (step !== lastLine) {
          progressStream.write(`precompute: ${(fraction * 100).toFixed(0)}%  ${line}\n`);
          lastLine = step;
        }
      }
      if (done === keys.length) break;
      if (done !== lastDone) {
        lastDone = done;
        lastChange = Date.now();
      } else if (!warned && values.remote && Date.now() - lastChange > 30_000) {
        warned = true;
        progressStream.write(
          `${tty ? '\n' : ''}precompute: no progress for 30 s; is a precompute worker running?\n`,
        );
      }
      if (Date.now() > deadline) {
        if (tty) progressStream.write('\n');
        progressStream.write(
          `precompute: gave up after ${timeoutS} s with ${keys.length - done} chunks pending\n`,
        );
        return { code: 1 };
      }
      await new Promise((r) => setTimeout(r, 200));
      info = await docs.chunkInfo(keys);
    }
    if (tty) progressStream.write('\n');

    const state = (k: string) => (alreadyReady.has(k) ? 'ready' : info.get(k)?.state);
    const computedKeys = keys.filter(
      (k) => info.get(k)?.state === 'ready' && (info.get(k)?.written ?? 0) > 0,
    );
    const failedKeys = keys.filter((k) => info.get(k)?.state === 'failed');
    const summary: BatchSummary = {
      documents: docKeys.length,
      documentsReady: docKeys.filter((ks) => ks.every((k) => state(k) === 'ready')).length,
      documentsFailed: docKeys.filter((ks) => ks.some((k) => state(k) === 'failed')).length,
      chunks: docKeys.reduce((a, ks) => a + ks.length, 0),
      distinctChunks: distinct.size,
      alreadyStored: distinct.size - computedKeys.length - failedKeys.length,
      computed: computedKeys.length,
      failed: failedKeys.length,
      bytesWritten: computedKeys.reduce((a, k) => a + (info.get(k)?.written ?? 0), 0),
      seconds: Math.round((performance.now() - t0) / 100) / 10,
    };
    if (values.json) out(`${JSON.stringify(summary)}\n`);
    else {
      out(
        [
          `documents:      ${summary.documents} (${summary.documentsReady} ready, ${summary.documentsFailed} failed)`,
          `chunks:         ${summary.chunks} (${summary.distinctChunks} distinct)`,
          `already stored: ${summary.alreadyStored}`,
          `computed:       ${summary.computed}${summary.failed ? `  (failed: ${summary.failed})` : ''}`,
          `bytes written:  ${formatBytes(summary.bytesWritten)} (${summary.bytesWritten} bytes)`,
          `time:           ${summary.seconds.toFixed(1)} s`,
          '',
        ].join('\n'),
      );
    }
    return { code: summary.failed > 0 ? 1 : 0, summary };
  } catch (err) {
    progressStream.write(`precompute: ${err instanceof CacheBlendError ? err.message : errorMessage(err)}\n`);
    return { code: 1 };
  } finally {
    await worker?.close();
    await textThread?.close();
    await withTimeout(queue.close(), 2_000, 'closing the queue').catch(() => undefined);
    await closeRedis(redis);
    await store.close();
    await redisLaunch.stop();
  }
}

if (isEntryPoint(import.meta.url)) {
  precomputeBatch(process.argv.slice(2)).then(
    ({ code }) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`precompute: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
