import { Worker, type TransferListItem } from 'node:worker_threads';
import { type ErrorData, UnavailableError, errorFromData } from '../errors.js';

/**
 * Runs a handler module on a worker thread. onnxruntime's `InferenceSession.run` does its native work on
 * the calling JavaScript thread, so a process that also serves HTTP or renews BullMQ locks must never call
 * it on its main thread; it calls `InferenceThread.call` instead and stays responsive.
 *
 * The handler module exports `createHandlers(init)`, returning an object of async functions. Arguments
 * and results cross the thread boundary by structured clone (typed arrays may be transferred).
 */
export interface ThreadRequest {
  id: number;
  method: string;
  args: unknown[];
}

export type ThreadResponse =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: ErrorData }
  | { id: -1; ok: true; value: 'ready' }
  | { id: -1; ok: false; error: ErrorData };

export interface ThreadBootData {
  moduleUrl: string;
  init: unknown;
}

/** The thread itself is gone (it crashed or exited): every call on it fails with this; start another. */
export class ThreadDiedError extends UnavailableError {
  readonly threadDied = true;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

/**
 * A Worker for the thread entry beside this file: the built .js, or under tests the .ts source, loaded
 * through tsx's loader registered inside the worker (a worker's execArgv `--import` does not apply to its
 * own entry module on Node 20).
 */
function spawnEntry(workerData: ThreadBootData): Worker {
  if (!import.meta.url.endsWith('.ts'))
    return new Worker(new URL('./thread-entry.js', import.meta.url), { workerData });
  const entry = new URL('./thread-entry.ts', import.meta.url).href;
  const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(boot, { eval: true, workerData });
}

export class InferenceThread<H extends Record<string, (...args: never[]) => unknown>> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private failure: Error | null = null;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (msg: ThreadResponse) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.value);
      else p.reject(errorFromData(msg.error));
    });
    const fail = (err: Error) => {
      this.failure = err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.on('error', (err) =>
      fail(new ThreadDiedError(`inference thread crashed: ${err.message}`, { cause: err })),
    );
    worker.on('exit', (code) => fail(new ThreadDiedError(`inference thread exited (code ${code})`)));
  }

  /** Start a thread that imports `moduleUrl` and calls its `createHandlers(init)`; resolves once ready. */
  static async start<H extends Record<string, (...args: never[]) => unknown>>(
    moduleUrl: URL | string,
    init: unknown,
  ): Promise<InferenceThread<H>> {
    const worker = spawnEntry({ moduleUrl: String(moduleUrl), init });
    const thread = new InferenceThread<H>(worker);
    await new Promise<void>((resolve, reject) => {
      thread.pending.set(-1, { resolve: () => resolve(), reject });
    });
    return thread;
  }

  call<K extends keyof H & string>(
    method: K,
    args: Parameters<H[K]>,
    transfer: TransferListItem[] = [],
  ): Promise<Awaited<ReturnType<H[K]>>> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      const req: ThreadRequest = { id, method, args };
      this.worker.postMessage(req, transfer);
    });
  }

  async terminate(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
