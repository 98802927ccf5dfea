/** What the routers need: configuration, connections, the documents service and the model's identity. */
import type { Queue, QueueEvents } from 'bullmq';
import type { Config } from '../core/config/index.js';
import type { DocumentService, ModelIdentity } from '../core/documents/documents.js';
import { UnavailableError } from '../core/errors.js';
import type { Logger } from '../core/ops/log.js';
import type { RedisClient } from '../core/queue/redis.js';
import type { Retriever } from '../core/retrieval/index.js';
import type { ObjectStore } from '../core/storage/types.js';

export interface ApiDeps {
  config: Config;
  redis: RedisClient;
  store: ObjectStore;
  docs: DocumentService;
  /** Ranks chunks for queries; its index follows the corpus change log. */
  retriever: Retriever;
  blendQueue: Queue;
  /** Shown in the jobs view beside the blend queue. */
  precomputeQueue: Queue;
  blendEvents: QueueEvents;
  /** The model's tokenizer and fingerprint once loaded; null while loading or after a failed load. */
  model(): ModelIdentity | null;
  /** Why the model is not loaded (null while loading normally). */
  modelError(): string | null;
  log?: Logger;
}

/** Why the model is not usable yet, as a readiness check's text. */
export function modelState(deps: ApiDeps): string {
  if (deps.model()) return 'ok';
  const why = deps.modelError();
  return `not loaded${why ? `: ${why}` : ' yet'}`;
}

/** The loaded model, or a 503 saying why there is none. */
export function requireModel(deps: ApiDeps): ModelIdentity {
  const model = deps.model();
  if (model) return model;
  throw new UnavailableError(`model ${modelState(deps)}`);
}
