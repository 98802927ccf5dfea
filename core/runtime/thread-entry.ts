import { parentPort, workerData } from 'node:worker_threads';
import { errorData } from '../errors.js';
import type { ThreadBootData, ThreadRequest, ThreadResponse } from './inference-thread.js';

/**
 * Worker-thread side of InferenceThread: load the handler module, then serve calls one at a time. A failed
 * call answers with its error's data (code, message, field), which the caller rebuilds as the same error.
 */
const port = parentPort!;
const boot = workerData as ThreadBootData;

try {
  const mod = (await import(boot.moduleUrl)) as {
    createHandlers(init: unknown): Promise<Record<string, (...a: unknown[]) => unknown>>;
  };
  const handlers = await mod.createHandlers(boot.init);
  // Calls run strictly in order: one engine, one set of sessions, no interleaving of forwards.
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (req: ThreadRequest) => {
    queue = queue.then(async () => {
      let res: ThreadResponse;
      try {
        const fn = handlers[req.method];
        if (typeof fn !== 'function') throw new Error(`no handler named ${req.method}`);
        res = { id: req.id, ok: true, value: await fn(...req.args) };
      } catch (err) {
        res = { id: req.id, ok: false, error: errorData(err) };
      }
      port.postMessage(res);
    });
  });
  port.postMessage({ id: -1, ok: true, value: 'ready' } satisfies ThreadResponse);
} catch (err) {
  port.postMessage({ id: -1, ok: false, error: errorData(err) } satisfies ThreadResponse);
}
