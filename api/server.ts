/**
 * Starts the HTTP API: a fail-fast Redis connection for producing jobs and bookkeeping, a blocking one for
 * queue events, the object store, and a text thread with the model's tokenizer and fingerprint (loaded in
 * the background: /readyz answers 503 until it is there). Inference never runs here.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Queue, QueueEvents } from 'bullmq';
import type { Config } from '../core/config/index.js';
import { errorMessage } from '../core/errors.js';
import { loadModel } from '../core/model/load.js';
import { BLEND_QUEUE, PRECOMPUTE_QUEUE } from '../core/queue/contracts.js';
import { closeRedis, createRedis, waitForRedis } from '../core/queue/redis.js';
import { withTimeout } from '../core/util/timeout.js';
import { DocumentService } from '../core/documents/documents.js';
import { silentLogger, type Logger } from '../core/ops/log.js';
import { localIdentity, startTextThread, type ModelIdentity } from '../core/documents/text.js';
import { openObjectStore } from '../core/storage/index.js';
import { createApp } from './app.js';

export interface ApiServer {
  url: string;
  port: number;
  server: Server;
  docs: DocumentService;
  /** Resolves once the model is loaded (rejects if loading failed). */
  modelReady: Promise<ModelIdentity>;
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
}

/** The model's identity with chunking done in this thread (tests and tools; servers use a text thread). */
export async function loadModelIdentity(config: Config): Promise<ModelIdentity> {
  return localIdentity(await loadModel(config.model, { searchPath: [...config.modelPath] }));
}

export async function startApi(opts: StartApiOptions): Promise<ApiServer> {
  const { config } = opts;
  const log = opts.log ?? silentLogger;
  const redis = createRedis(config.redisUrl, 'producer');
  await waitForRedis(redis, 5_000).catch((err) =>
    log.warn('Redis is not reachable yet; /readyz reports it', { error: errorMessage(err) }),
  );
  const store = openObjectStore(config.kvStoreUrl, { s3: config.s3 });
  const prefix = config.queuePrefix;
  const precomputeQueue = new Queue(PRECOMPUTE_QUEUE, { connection: redis, prefix });
  const blendQueue = new Queue(BLEND_QUEUE, { connection: redis, prefix });
  const eventsConnection = createRedis(config.redisUrl, 'worker');
  const blendEvents = new QueueEvents(BLEND_QUEUE, { connection: eventsConnection, prefix });
  blendEvents.setMaxListeners(0);
  for (const emitter of [precomputeQueue, blendQueue, blendEvents]) {
    (emitter as unknown as NodeJS.EventEmitter).on('error', (err: Error) =>
      log.debug('queue connection error', { error: errorMessage(err) }),
    );
  }
  const docs = new DocumentService(redis, store, precomputeQueue, prefix, log);

  let model: ModelIdentity | null = opts.model ?? null;
  let modelError: string | null = null;
  // Chunking and tokenizing documents runs on a thread of its own, so large documents never stall HTTP.
  const textThread = opts.model
    ? null
    : startTextThread({ model: config.model, modelPath: [...config.modelPath] });
  const modelReady = opts.model ? Promise.resolve(opts.model) : textThread!.then((t) => t.identity);
  modelReady.then(
    (m) => {
      model = m;
      log.info('model loaded', { model: config.model, fingerprint: m.fingerprint.slice(0, 16) });
    },
    (err) => {
      modelError = errorMessage(err);
      log.error('model failed to load', { model: config.model, error: modelError });
    },
  );

  const app = createApp({
    config,
    redis,
    store,
    docs,
    blendQueue,
    blendEvents,
    model: () => model,
    modelError: () => modelError,
    log,
  });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(opts.port ?? config.port, opts.host ?? config.host, (err?: Error) =>
      err ? reject(err) : resolve(s),
    );
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = Math.max(120_000, config.queryTimeoutMs + 30_000);
  server.keepAliveTimeout = 5_000;
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  log.info('API listening', { url: `http://${host}:${port}` });

  return {
    url: `http://${host}:${port}`,
    port,
    server,
    docs,
    modelReady,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await withTimeout(blendEvents.close(), 2_000, 'closing queue events').catch(() => undefined);
      await withTimeout(
        Promise.all([precomputeQueue.close(), blendQueue.close()]),
        2_000,
        'closing queues',
      ).catch(() => undefined);
      await closeRedis(eventsConnection);
      await closeRedis(redis);
      await store.close();
      await textThread?.then((t) => t.close()).catch(() => undefined);
    },
  };
}
