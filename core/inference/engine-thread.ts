import type { Config } from '../config/index.js';
import { selectProcessGpu } from '../runtime/gpus.js';
import { InferenceThread, ThreadDiedError } from '../runtime/inference-thread.js';
import type { EngineHandlers, EngineThreadInit } from './engine-handlers.js';
import { THREAD_SETTINGS } from './engine-context.js';

export type EngineThread = InferenceThread<EngineHandlers>;

/** The handler module beside this file: the .ts source under tests (tsx), the built .js otherwise. */
const HANDLERS_URL = new URL(
  import.meta.url.endsWith('.ts') ? './engine-handlers.ts' : './engine-handlers.js',
  import.meta.url,
);

export function engineThreadInit(
  config: Config,
  overrides: Partial<EngineThreadInit> = {},
): EngineThreadInit {
  const settings = Object.fromEntries(THREAD_SETTINGS.map((k) => [k, config[k]])) as Pick<
    Config,
    (typeof THREAD_SETTINGS)[number]
  >;
  return {
    ...structuredClone(settings),
    threads: 0,
    diskCacheDir: config.diskCacheDir,
    chunkWrites: {
      redisUrl: config.redisUrl,
      redisClusterNodes: config.redisClusterNodes.map((n) => ({ ...n })),
      queuePrefix: config.queuePrefix,
    },
    ...overrides,
  };
}

/** Start an inference thread that loads the model and the chunk loader; resolves once it is ready. */
export function startEngineThread(init: EngineThreadInit): Promise<EngineThread> {
  // Before the thread's first GPU session: WebGPU's adapter is chosen through the process environment.
  selectProcessGpu(init.executionProvider, init.gpuIndex);
  return InferenceThread.start<EngineHandlers>(HANDLERS_URL, init);
}

/** What the workers need of an inference thread. */
export type EngineCaller = Pick<EngineThread, 'call' | 'terminate'>;

/**
 * An inference thread that is started again when it dies (a crash, or an out-of-memory exit): the call
 * that saw it die fails, later calls go to the new thread.
 */
export class SupervisedEngineThread implements EngineCaller {
  private current: Promise<EngineThread>;
  private stopped = false;

  private constructor(
    private readonly init: EngineThreadInit,
    private readonly onRestart: (reason: string) => void,
  ) {
    this.current = startEngineThread(init);
  }

  static async start(init: EngineThreadInit, onRestart: (reason: string) => void = () => undefined) {
    const s = new SupervisedEngineThread(init, onRestart);
    await s.current;
    return s;
  }

  call: EngineThread['call'] = (method, args, transfer) =>
    this.current.then((thread) =>
      thread.call(method, args, transfer).catch((err: unknown) => {
        if (!this.stopped && err instanceof ThreadDiedError) this.restart(thread, err.message);
        throw err;
      }),
    );

  private restart(dead: EngineThread, reason: string): void {
    void this.current.then((t) => {
      if (t !== dead || this.stopped) return;
      this.onRestart(reason);
      this.current = startEngineThread(this.init);
      this.current.catch(() => undefined);
      dead.terminate().catch(() => undefined);
    });
  }

  async terminate(): Promise<void> {
    this.stopped = true;
    await (await this.current.catch(() => null))?.terminate();
  }
}

/**
 * The inference thread a worker uses: the one it was given (shared, not its to stop), or a supervised one
 * of its own started from the config.
 */
export async function workerEngineThread(
  config: Config,
  opts: { thread?: EngineCaller; threadInit?: Partial<EngineThreadInit> },
  log: { error(msg: string, fields?: Record<string, unknown>): void },
): Promise<{ thread: EngineCaller; ownThread: boolean }> {
  if (opts.thread) return { thread: opts.thread, ownThread: false };
  const thread = await SupervisedEngineThread.start(engineThreadInit(config, opts.threadInit), (reason) =>
    log.error('inference thread died; starting a new one', { reason }),
  );
  return { thread, ownThread: true };
}
