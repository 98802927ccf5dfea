/**
 * What every writer of the document index shares: the Redis client, the object store, the keys, the Lua
 * script caller and the locks. One is built per DocumentService and handed to its parts (precompute jobs,
 * chunk states, garbage collection); nothing outside core/documents holds it.
 */
import type { RedisClient } from '../queue/redis.js';
import type { ObjectStore } from '../storage/types.js';
import { silentLogger, type Logger } from '../ops/log.js';
import { DocumentKeys } from './keys.js';
import { RedisLocks } from './locks.js';
import { documentScripts, type ScriptCaller } from './scripts.js';

export interface IndexHandle {
  readonly redis: RedisClient;
  readonly store: ObjectStore;
  readonly keys: DocumentKeys;
  readonly script: ScriptCaller;
  readonly locks: RedisLocks;
  readonly log: Logger;
}

export function indexHandle(
  redis: RedisClient,
  store: ObjectStore,
  queuePrefix: string,
  log: Logger = silentLogger,
): IndexHandle {
  const script = documentScripts(redis);
  return {
    redis,
    store,
    keys: new DocumentKeys(queuePrefix),
    script,
    locks: new RedisLocks(redis, script, log),
    log,
  };
}
