/**
 * What travels through the queues: queue names, job names, payloads and results. The API and the batch
 * command produce, the workers consume; both sides import these types and nothing else from each other.
 */
import type { JobHistory } from '../config/index.js';
import type { AttentionSource, BlendMode, DeviationMetric, SelectionStrategy } from '../blend/index.js';
import type { CacheStats } from '../cache/types.js';
import type { FinishReason } from '../model/generate.js';
import type { PlannedPrompt } from '../inference/prompt-plan.js';

/**
 * Precompute: one job per chunk and generation, job id `<chunk key>-<generation>`, so the same chunk
 * enqueued twice while pending is one job, and a chunk taken up again after its job ended (skipped, failed,
 * deleted) gets a new one (see core/documents/lua/ingest.lua).
 */
export const PRECOMPUTE_QUEUE = 'precompute';
export const PRECOMPUTE_JOB = 'chunk';

export function precomputeJobId(key: string, gen: number): string {
  return `${key}-${gen}`;
}

/** Backoff between precompute attempts: 1 s doubling to 60 s, with jitter (12 attempts span ~6 minutes). */
export function precomputeBackoffMs(attemptsMade: number): number {
  const base = Math.min(60_000, 1_000 * 2 ** Math.max(0, attemptsMade - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

/**
 * Options of every precompute job; the worker supplies the 'custom' backoff (precomputeBackoffMs). Finished
 * jobs stay for the /jobs board within `history` (JOBS_KEEP_*); a finished job whose id is enqueued again
 * is removed first (PrecomputeJobs.enqueue, core/documents/precompute-jobs.ts), so keeping it never swallows the new one.
 */
export function precomputeJobOptions(attempts: number, history: JobHistory) {
  return {
    attempts,
    backoff: { type: 'custom' },
    ...keepJobs(history),
  } as const;
}

/** BullMQ's removeOnComplete/removeOnFail for a job history (count and age, whichever is reached first). */
export function keepJobs(history: JobHistory) {
  return {
    removeOnComplete: { count: history.completed.count, age: history.completed.age },
    removeOnFail: { count: history.failed.count, age: history.failed.age },
  };
}

/** Blend: one job per query, job id = a random UUID chosen by the producer (so it can listen first). */
export const BLEND_QUEUE = 'blend';
export const BLEND_JOB = 'query';

/**
 * Cancelling a query whose client went away: the API marks the job cancelled (a key, checked when a worker
 * starts the job) and announces it on a channel (a worker running it aborts it). Both carry the
 * `{QUEUE_PREFIX}` hash tag (core/queue/redis.ts `keyPrefix`).
 */
export function blendCancelChannel(taggedPrefix: string): string {
  return `${taggedPrefix}:blend:cancel`;
}

export function blendCancelledKey(taggedPrefix: string, jobId: string): string {
  return `${taggedPrefix}:blend:cancelled:${jobId}`;
}

/** How long a cancellation mark is kept (a job still waiting after this long has expired anyway). */
export const CANCEL_MARK_MS = 10 * 60_000;

export interface PrecomputeJobData {
  /** chunkKey(fingerprint, tokenIds, salt). */
  key: string;
  /** Fingerprint of the model the chunk's cache must be computed with. */
  fingerprint: string;
  tokenIds: number[];
  /** The tenant's cache salt in the key ('' or absent: none). */
  salt?: string;
  /** Id of the HTTP request (or batch run) that enqueued the chunk, for log correlation. */
  requestId?: string;
}

export interface PrecomputeJobResult {
  key: string;
  /** True when this job ran the model; false when a valid object was already stored (or nobody wants it). */
  computed: boolean;
  /** Size of the stored object. */
  bytes: number;
  /** Bytes this job wrote to the store (0 when the object already existed). */
  written: number;
  /** Set when the job did nothing because no document references the chunk any more. */
  skipped?: 'unreferenced';
}

export interface BlendChunkRef {
  key: string;
  tokenIds: number[];
}

/** One chunk retrieval put into the prompt: where it comes from and its relevance score. */
export interface UsedChunk {
  document: string;
  index: number;
  score: number;
  tokens: number;
}

/** What retrieval chose for a query (computed by the API, echoed in the result). */
export interface RetrievalSummary {
  /** Chunks used, in prompt order. */
  chunks: UsedChunk[];
  /** Candidate chunks that were not used (over the budget, over topK, or, for the corpus, unmatched). */
  leftOut: number;
  /** Context tokens the chunks could take: context − template − question − maxTokens. */
  budget: number;
  order: 'document' | 'relevance';
}

/**
 * A piece of a prompt found to hold stored chunks: a stored chunk (tokenized as it was precomputed, so its
 * cache applies) or the text between chunks (tokenized on its own by the worker, like a raw chunk).
 */
export type PromptSegment = BlendChunkRef | { text: string };

/** Stored chunks found inside a prompt's text (automatic chunk matching), in prompt order. */
export interface MatchSummary {
  chunks: { document: string; index: number; tokens: number }[];
  /** Their tokens in all. */
  tokens: number;
}

/**
 * A request's `selection` (core/blend/selection.ts): strategy, deviation metric, where question attention
 * is measured, sink tokens per chunk.
 */
export interface BlendSelection {
  strategy?: SelectionStrategy;
  metric?: DeviationMetric;
  attention?: AttentionSource;
  sinkTokens?: number;
}

export interface BlendJobData {
  /** The question as asked (the job board and logs show it); the worker answers `prompt`. */
  question: string;
  /**
   * The prompt, planned by the API (core/inference/prompt-plan.ts): the template's frame, the context's
   * chunks as token ids and cache keys, the question's ids. The worker validates it; it plans nothing.
   */
  prompt: PlannedPrompt;
  matched?: MatchSummary;
  /** The tenant the job belongs to (others get 404 for it); absent: DEFAULT_TENANT. */
  tenant?: string;
  documents: string[];
  fingerprint: string;
  mode: BlendMode;
  /** The request named its mode: the worker runs it as asked, never the cost plan's cheaper mode. */
  modePinned?: boolean;
  /** A fixed ratio, or `auto`: the loading controller's max(r_load, BLEND_MIN_RATIO). */
  ratio?: number | 'auto';
  /** How blend picks the tokens it recomputes (absent: BLEND_SELECTION's default). */
  selection?: BlendSelection;
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  /** Stop sequences: the answer ends before the first one generated. */
  stop?: string[];
  seed: number;
  /** Return each generated token's log-probability and this many alternatives (0–20); absent: none. */
  logprobs?: number;
  /** Publish the answer's text as job progress while it is generated (for SSE). */
  stream: boolean;
  /** Id of the HTTP request that made the job, for log correlation. */
  requestId?: string;
  retrieval?: RetrievalSummary;
  /** Return which context tokens were recomputed, with each token's text (result field `explain`). */
  explain?: boolean;
}

/** The context as the model saw it, and which of its tokens the prefill recomputed. */
export interface ExplainedContext {
  /** Each chunk's tokens as text, in prompt order; they join to the chunk's text (see tokenPieces). */
  chunks: string[][];
  /**
   * Indices of the recomputed tokens over the chunks' tokens in order (0 = the first chunk's first token),
   * ascending: every token for full, the prefilled tail for prefix, none for reuse, the selection for blend.
   */
  recomputed: number[];
}

/** How `ratio: "auto"` was decided: the controller's inputs (null before any load or layer was observed). */
export interface AutoRatio {
  minRatio: number;
  layerLoadMs: number | null;
  tokenLayerMs: number | null;
}

/** The cost plan of a job that left its mode to the service (core/inference/cost-plan.ts). */
export interface CostPlan {
  chose: 'blend' | 'full';
  /** Time to read (and upload) the chunk caches, from the observed rates of their tiers. */
  predictedLoadMs: number;
  /** Time to prefill the whole prompt, from observed prefills. */
  predictedFullMs: number;
}

export interface BlendJobResult {
  answer: string;
  /** Generated token ids. */
  tokens: number[];
  mode: BlendMode;
  /** Worker time from job start to the first token's logits (cache loading included). */
  ttftMs: number;
  promptTokens: number;
  /** Tokens of the template's cached prefix (0 without one). */
  prefixTokens: number;
  contextTokens: number;
  recomputedTokens: number;
  /**
   * Prompt tokens whose K/V were read from a stored cache (the template prefix's, the chunks') instead of
   * computed for this query: 0 in full mode; in blend mode a share of them is then recomputed.
   */
  cachedTokens: number;
  /** Blend ratio used (blend mode only). */
  ratio?: number;
  /** Set when the request asked for `ratio: "auto"`. */
  autoRatio?: AutoRatio;
  /** Set when blend was asked for and the model, flagged by its calibration, was served in full mode. */
  gatedToFull?: true;
  /** Blend by default, run in full by the cost plan: what it predicted (see cost-plan.ts). */
  plan?: CostPlan;
  /** `stop`: an end token or a stop sequence; `length`: maxTokens reached. */
  finishReason: FinishReason;
  /** The template applied: none, chat or jinja. */
  template: string;
  retrieval?: RetrievalSummary;
  matched?: MatchSummary;
  /** Set when the job asked for logprobs: one per generated token. */
  logprobs?: TextLogprob[];
  /** Set when the job asked for it (`explain: true`). */
  explain?: ExplainedContext;
  timings: {
    /** Opening chunk caches plus waiting for layers that were not ready when needed. */
    loadMs: number;
    /** Prefill compute plus decoding. */
    computeMs: number;
    /** Job created → job started (set by the worker's main thread). */
    queueMs: number;
    /** Job started → result ready, in the worker. */
    workerMs: number;
  };
  cache: CacheStats;
}

/** A generated token as text with its log-probability (and its step's most likely alternatives). */
export interface TextLogprob {
  token: string;
  logprob: number;
  top: { token: string; logprob: number }[];
}

/** Progress a streaming blend job publishes: the answer's text so far is the concatenation of deltas. */
export interface BlendProgress {
  delta: string;
  /** Tokens generated so far. */
  tokens: number;
}

/** Error codes a job's input caused: retrying will not help (no retry, and the reconciler leaves them). */
export const PERMANENT_FAILURES: ReadonlySet<string> = new Set([
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'KV_MISMATCH',
  'UNSUPPORTED_MODEL',
  'PAYLOAD_TOO_LARGE',
  'CANCELLED',
]);

/**
 * Job failures cross Redis as plain strings; workers prefix the error code (`INVALID_ARGUMENT: …`) so the
 * API can map a failed job back to an HTTP status.
 */
export function encodeFailure(code: string, message: string): string {
  return `${code}: ${message}`;
}

export function decodeFailure(reason: string | undefined): { code: string; message: string } {
  const m = /^([A-Z_]+): ([\s\S]*)$/.exec(reason ?? '');
  return m ? { code: m[1], message: m[2] } : { code: 'INTERNAL', message: reason || 'job failed' };
}
