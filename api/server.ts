/**
 * Starts the HTTP API: a fail-fast Redis connection for producing jobs and bookkeeping, a blocking one for
 * queue events, the object store, and a text thread with the model's tokenizer and fingerprint (loaded in
 * the background: /readyz answers 503 until it is there). Inference never runs here.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Queue, QueueEvents } from 'bullmq';
import type { Config } from '../core/config/index.js';
import { ConfigError, errorMessage } from '../core/errors.js';
import { loadModel } from '../core/model/load.js';
import { BLEND_QUEUE, PRECOMPUTE_QUEUE } from '../core/queue/contracts.js';
import { checkDurabilityWhenReachable } from '../core/queue/durability.js';
import { closeRedis, closeWhileConnected, createRedis, dropQueues, keyPrefix } from '../core/queue/redis.js';
import { DocumentService } from '../core/documents/documents.js';
import { cacheSalt } from '../core/documents/names.js';
import { retokenizeDocuments } from '../core/documents/retokenize.js';
import { silentLogger, type Logger } from '../core/ops/log.js';
import { localIdentity, startTextThread, type ModelIdentity } from '../core/documents/text.js';
import { CorpusSync, Retriever } from '../core/retrieval/index.js';
import { openObjectStore } from '../core/storage/index.js';
import { createApp } from './app.js';

export interface ApiServer {
  url: string;
  port: number;
  server: Server;
  docs: DocumentService;
  /** This process's ranking index and its change-log follower. */
  corpus: CorpusSync;
  /** Resolves once the model is loaded (rejects if loading failed). */
  modelReady: Promise<ModelIdentity>;
  /** Resolves once documents of another model have been re-tokenized for this one (core/documents/retokenize.ts). */
  retokenized: Promise<void>;
  close(): Promise<void>;
}

export interface StartApiOptions {
  config: Config;
  log?: Logger;
  /** Overrides config.port (0: any free port). */
  port?: number;
  host?: string;
  /** Use this model identity instead of loading config.model. */
  model?: ModelIdentity;
  /** Re-tokenize documents of another model once the model is loaded (default true; off in some tests). */
  retokenize?: boolean;
}

/** The model's identity with chunking done in this thread (tests and tools; servers use a text thread). */
export async function loadModelIdentity(config: Config): Promise<ModelIdentity> {
  return localIdentity(await loadModel(config.model, config.modelSource));
}

/** The model identity, loaded in the background: /readyz answers 503 until it is there. */
class BackgroundModel {
  current: ModelIdentity | null = null;
  error: string | null = null;
  readonly ready: Promise<ModelIdentity>;
  private readonly textThread: ReturnType<typeof startTextThread> | null;

  constructor(config: Config, log: Logger, given?: ModelIdentity) {
    // Chunking and tokenizing documents runs on a thread of its own, so large documents never stall HTTP.
    this.textThread = given
      ? null
      : startTextThread({ model: config.model, modelSource: config.modelSource });
    this.ready = given ? Promise.resolve(given) : this.textThread!.then((t) => t.identity);
    this.ready.then(
      (m) => {
        this.current = m;
        log.info('model loaded', { model: config.model, fingerprint: m.fingerprint.slice(0, 16) });
      },
      (err) => {
        this.error = errorMessage(err);
        log.error('model failed to load', { model: config.model, error: this.error });
      },
    );
  }

  async close(): Promise<void> {
    await this.textThread?.then((t) => t.close()).catch(() => undefined);
  }
}

/** The API's Redis connections and queues. */
function openQueues(config: Config, log: Logger) {
  const redis = createRedis(config, 'producer');
  const prefix = keyPrefix(config.queuePrefix);
  const precomputeQueue = new Queue(PRECOMPUTE_QUEUE, { connection: redis, prefix });
  const blendQueue = new Queue(BLEND_QUEUE, { connection: redis, prefix });
  const eventsConnection = createRedis(config, 'worker');
  const blendEvents = new QueueEvents(BLEND_QUEUE, { connection: eventsConnection, prefix });
  blendEvents.setMaxListeners(0);
  blendQueue.setMaxListeners(0); // every query waiting for its job listens for the queue closing
  for (const emitter of [precomputeQueue, blendQueue, blendEvents]) {
    (emitter as unknown as NodeJS.EventEmitter).on('error', (err: Error) =>
      log.debug('queue connection error', { error: errorMessage(err) }),
    );
  }
  return {
    redis,
    precomputeQueue,
    blendQueue,
    blendEvents,
    async close() {
      // Given up at once when Redis is gone (a Ctrl-C that stopped it too): nothing would answer.
      const closed = await closeWhileConnected(
        () => Promise.all([blendEvents.close(), precomputeQueue.close(), blendQueue.close()]),
        redis,
        2_000,
      );
      if (!closed) dropQueues([blendEvents, precomputeQueue, blendQueue]);
      await closeRedis(eventsConnection);
      await closeRedis(redis);
    },
  };
}

async function listen(
  app: ReturnType<typeof createApp>,
  port: number,
  host: string,
  config: Config,
): Promise<Server> {
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(port, host, (err?: Error) =>
      err ? reject(listenError(err, port, host)) : resolve(s),
    );
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = Math.max(120_000, config.queryTimeoutMs + 30_000);
  server.keepAliveTimeout = 5_000;
  return server;
}

/** A port already taken says so, and how to pick another. */
function listenError(err: Error, port: number, host: string): Error {
  if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') return err;
  return new ConfigError(
    `port ${port} on ${host} is taken: another process is listening there; stop it, or choose another port (PORT or --port)`,
  );
}

/**
 * Connect, and refuse a Redis that would lose documents (see core/queue/durability.ts). One that is not
 * reachable yet is checked by readiness once it is.
 */
async function connectRedis(
  queues: ReturnType<typeof openQueues>,
  config: Config,
  log: Logger,
): Promise<void> {
  try {
    await checkDurabilityWhenReachable(queues.redis, config.redisRequireDurable, log);
  } catch (err) {
    await queues.close();
    throw err;
  }
}

export async function startApi(opts: StartApiOptions): Promise<ApiServer> {
  const { config } = opts;
  const log = opts.log ?? silentLogger;
  const queues = openQueues(config, log);
  await connectRedis(queues, config, log);
  if (config.apiKeys.length === 0) {
    log.warn('API_KEYS is unset: the API is open, every client reads and deletes every document');
  }
  const store = openObjectStore(config.kvStoreUrl, { s3: config.s3 });
  const docs = new DocumentService(
    queues.redis,
    store,
    queues.precomputeQueue,
    config.queuePrefix,
    log,
    config.precomputeAttempts,
    config.jobHistory,
  );
  const corpus = new CorpusSync(docs, createRedis(config, 'worker'), log);
  const model = new BackgroundModel(config, log, opts.model);
  const app = createApp({
    config,
    redis: queues.redis,
    store,
    docs,
    retriever: new Retriever(docs, corpus),
    blendQueue: queues.blendQueue,
    precomputeQueue: queues.precomputeQueue,
    blendEvents: queues.blendEvents,
    model: () => model.current,
    modelError: () => model.error,
    log,
  });
  const closeAll = async () => {
    await corpus.stop();
    await queues.close();
    await store.close();
    await model.close();
  };
  const retokenizing =
    opts.retokenize === false
      ? Promise.resolve()
      : model.ready
          .then((m) =>
            retokenizeDocuments(docs, m, {
              budget: config.chunkTokenBudget,
              salt: (tenant) => cacheSalt(tenant, config.shareChunkCache),
              log,
            }),
          )
          .then(
            () => undefined,
            (err: unknown) => log.warn('re-tokenizing documents failed', { error: errorMessage(err) }),
          );
  const server = await listen(app, opts.port ?? config.port, opts.host ?? config.host, config).catch(
    async (err: unknown) => {
      await closeAll(); // a port already taken, say: nothing may stay connected
      throw err;
    },
  );
  const { port, address } = server.address() as AddressInfo;
  const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
  log.info('API listening', { url });
  return {
    url,
    port,
    server,
    docs,
    corpus,
    modelReady: model.ready,
    retokenized: retokenizing,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await closeAll();
    },
  };
}
