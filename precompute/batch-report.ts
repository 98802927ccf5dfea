/** What the batch reports: progress while it waits (a bar on a TTY, lines elsewhere) and the summary. */
import type { DocumentService } from '../core/documents/documents.js';

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
  /** Tokens of the chunks computed by this run, and per second of the run's whole time. */
  tokensComputed: number;
  tokensPerSecond: number;
  seconds: number;
}

/** Where progress goes; a TTY gets a redrawn bar, anything else plain lines. */
export type Progress = NodeJS.WriteStream | { write(s: string): unknown; isTTY?: boolean };

/** What ingesting the files produced: each document's chunk keys, and which chunks need computing. */
export interface Ingested {
  docKeys: string[][];
  /** Chunks a precompute job was enqueued for. */
  enqueued: Set<string>;
  /** Chunks already ready when their document was stored. */
  alreadyReady: Set<string>;
}

export type ChunkInfo = Awaited<ReturnType<DocumentService['chunkInfo']>>;

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/**
 * Draws the wait as a bar on a TTY (redrawn) or as a line per tenth elsewhere, and warns once when a
 * remote run sees no progress for 30 s.
 */
export class ProgressReport {
  private lastStep = -1;
  private lastDone = -1;
  private lastChange = Date.now();
  private warned = false;
  readonly tty: boolean;

  constructor(
    private readonly stream: Progress,
    private readonly t0: number,
    private readonly warnIfStalled: boolean,
  ) {
    this.tty = Boolean((stream as { isTTY?: boolean }).isTTY);
  }

  update(finished: number, total: number, done: number, written: number): void {
    const fraction = total === 0 ? 1 : finished / total;
    const line = `${finished}/${total} chunks  ${formatBytes(written)} written  ${((performance.now() - this.t0) / 1000).toFixed(1)} s`;
    if (this.tty) {
      const width = 30;
      const filled = Math.round(fraction * width);
      this.stream.write(
        `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%  ${line}\x1b[K`,
      );
    } else if (Math.floor(fraction * 10) !== this.lastStep) {
      this.stream.write(`precompute: ${(fraction * 100).toFixed(0)}%  ${line}\n`);
      this.lastStep = Math.floor(fraction * 10);
    }
    if (done !== this.lastDone) {
      this.lastDone = done;
      this.lastChange = Date.now();
    } else if (!this.warned && this.warnIfStalled && Date.now() - this.lastChange > 30_000) {
      this.warned = true;
      this.stream.write(
        `${this.tty ? '\n' : ''}precompute: no progress for 30 s; is a precompute worker running?\n`,
      );
    }
  }

  /** End a redrawn bar's line. */
  end(): void {
    if (this.tty) this.stream.write('\n');
  }
}

export function summarize(ingested: Ingested, info: ChunkInfo, t0: number): BatchSummary {
  const { docKeys, enqueued, alreadyReady } = ingested;
  const keys = [...enqueued];
  const distinct = new Set(docKeys.flat());
  const state = (k: string) => (alreadyReady.has(k) ? 'ready' : info.get(k)?.state);
  const computedKeys = keys.filter((k) => info.get(k)?.state === 'ready' && (info.get(k)?.written ?? 0) > 0);
  const failedKeys = keys.filter((k) => info.get(k)?.state === 'failed');
  const tokens = computedKeys.reduce((a, k) => a + (info.get(k)?.tokens ?? 0), 0);
  const seconds = (performance.now() - t0) / 1000;
  return {
    documents: docKeys.length,
    documentsReady: docKeys.filter((ks) => ks.every((k) => state(k) === 'ready')).length,
    documentsFailed: docKeys.filter((ks) => ks.some((k) => state(k) === 'failed')).length,
    chunks: docKeys.reduce((a, ks) => a + ks.length, 0),
    distinctChunks: distinct.size,
    alreadyStored: distinct.size - computedKeys.length - failedKeys.length,
    computed: computedKeys.length,
    failed: failedKeys.length,
    bytesWritten: computedKeys.reduce((a, k) => a + (info.get(k)?.written ?? 0), 0),
    tokensComputed: tokens,
    tokensPerSecond: Math.round(tokens / seconds),
    seconds: Math.round(seconds * 10) / 10,
  };
}

export function formatSummary(summary: BatchSummary): string {
  return [
    `documents:      ${summary.documents} (${summary.documentsReady} ready, ${summary.documentsFailed} failed)`,
    `chunks:         ${summary.chunks} (${summary.distinctChunks} distinct)`,
    `already stored: ${summary.alreadyStored}`,
    `computed:       ${summary.computed}${summary.failed ? `  (failed: ${summary.failed})` : ''}`,
    `bytes written:  ${formatBytes(summary.bytesWritten)} (${summary.bytesWritten} bytes)`,
    `tokens:         ${summary.tokensComputed} computed (${summary.tokensPerSecond} tokens/s over the whole run)`,
    `time:           ${summary.seconds.toFixed(1)} s`,
    '',
  ].join('\n');
}
