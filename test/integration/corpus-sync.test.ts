/**
 * The corpus change log against a real Redis: an index follows ingests and deletes made through another
 * DocumentService, rebuilds from the document list on start (including documents stored before the list
 * existed), and rebuilds when the log was trimmed past the last entry it applied.
 */
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DocumentService } from '../../core/documents/documents.js';
import { localIdentity, type ModelIdentity } from '../../core/documents/text.js';
import { loadModel } from '../../core/model/load.js';
import { PRECOMPUTE_QUEUE } from '../../core/queue/contracts.js';
import {
  closeRedis,
  createRedis,
  keyPrefix,
  waitForRedis,
  type RedisClient,
} from '../../core/queue/redis.js';
import { CorpusSync } from '../../core/retrieval/index.js';
import { openObjectStore, type ObjectStore } from '../../core/storage/index.js';
import { STORIES_DIR } from '../helpers/models.js';
import { uniqueName, waitFor } from '../helpers/service.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';

let redisServer: RedisHandle;
let redis: RedisClient;
let queue: Queue;
let store: ObjectStore;
let model: ModelIdentity;

beforeAll(async () => {
  redisServer = await startRedis();
  redis = createRedis(settings(), 'producer');
  await waitForRedis(redis);
  store = openObjectStore('memory://corpus-sync');
  model = localIdentity(await loadModel(STORIES_DIR));
});

afterAll(async () => {
  await queue?.close();
  if (redis) await closeRedis(redis);
  await store?.close();
  await redisServer?.stop();
});

const settings = () => ({ redisUrl: redisServer.url, redisClusterNodes: [] });

function service(prefix: string): DocumentService {
  queue = new Queue(PRECOMPUTE_QUEUE, { connection: redis, prefix: keyPrefix(prefix) });
  return new DocumentService(redis, store, queue, prefix);
}

const text = (what: string) => ({ text: `The ${what} sat by the window all day long.` });

describe('CorpusSync', () => {
  it('follows ingests and deletes, and rebuilds from the document list on start', async () => {
    const prefix = uniqueName('sync');
    const writer = service(prefix);
    await writer.ingest({ id: 'before', ...text('cat') }, model, { budget: 24 });
    // A document stored before the list existed: only its hash is there.
    await redis.zrem(writer.keys.docList, 'default/before');
    const sync = new CorpusSync(service(prefix), createRedis(settings(), 'worker'));
    try {
      await sync.ready;
      expect(sync.index.keysOf('before')).toBeDefined();
      expect(await redis.zscore(writer.keys.docList, 'default/before')).toBe('0');
      await writer.ingest({ id: 'later', ...text('owl') }, model, { budget: 24 });
      await waitFor(async () => sync.index.keysOf('later') !== undefined, 5_000, 'the ingest');
      expect(sync.index.rank('owl window')[0].document).toBe('later');
      await writer.remove('later');
      await waitFor(async () => sync.index.keysOf('later') === undefined, 5_000, 'the delete');
    } finally {
      await sync.stop();
    }
  });

  it('rebuilds when the log was trimmed past the last entry it applied', async () => {
    const prefix = uniqueName('sync');
    const writer = service(prefix);
    await writer.ingest({ id: 'a', ...text('dog') }, model, { budget: 24 });
    const sync = new CorpusSync(service(prefix), createRedis(settings(), 'worker'));
    try {
      await sync.ready;
      // Fault: an ingest whose log entry is lost (written to another stream), then the log trimmed away and
      // one unrelated entry appended — as if this process had fallen more than the log's length behind.
      const lost = service(prefix);
      Object.defineProperty(lost.keys, 'corpusLog', { get: () => `${prefix}:elsewhere` });
      await lost.ingest({ id: 'b', ...text('fox') }, model, { budget: 24 });
      await redis
        .multi()
        .xtrim(writer.keys.corpusLog, 'MAXLEN', 0)
        .xadd(writer.keys.corpusLog, '*', 'op', 'ingest', 'doc', 'a')
        .exec();
      await waitFor(async () => sync.index.keysOf('b') !== undefined, 5_000, 'a rebuild that finds b');
    } finally {
      await sync.stop();
    }
  });
});
