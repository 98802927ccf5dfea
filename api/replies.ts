/**
 * Reply schemas of the HTTP API (zod), the replies' one definition: the routes' reply types are inferred
 * from them (or, where core defines the type, checked to be the same both ways at compile time), and the
 * OpenAPI document's response schemas are generated from them (openapi.ts). test/e2e/replies.test.ts
 * parses real replies with them: objects are strict, so a field added to a reply and not here fails.
 */
import { z } from 'zod';
import { ATTENTION_SOURCES, BLEND_MODES, SELECTION_STRATEGIES } from '../core/blend/index.js';
import type { DocumentStatus, DocumentSummary } from '../core/documents/types.js';
import type { Calibration } from '../core/eval/calibrate.js';
import type { BlendJobResult } from '../core/queue/contracts.js';

const int = z.number().int();
const ms = z.number().describe('milliseconds');
const tiers = z.strictObject({ gpu: int, lru: int, disk: int, store: int });

const CacheStats = z.strictObject({
  hits: tiers.describe('chunk caches found in each tier'),
  misses: int.describe('chunk caches found nowhere usable, computed during the query'),
  corrupt: int.describe(
    'chunk caches found corrupt in some tier (also counted where the replacement came from)',
  ),
  bytesLoaded: tiers.describe('bytes read from each tier'),
});

const Retrieval = z.strictObject({
  chunks: z.array(z.strictObject({ document: z.string(), index: int, score: z.number(), tokens: int })),
  leftOut: int.describe('candidate chunks not used'),
  budget: int.describe('context tokens the chunks could take'),
  order: z.enum(['document', 'relevance']),
});

const Explain = z.strictObject({
  chunks: z.array(z.array(z.string())).describe("each chunk's tokens as text, in prompt order"),
  recomputed: z.array(int).describe("indices of the recomputed tokens over the chunks' tokens in order"),
});

const Matched = z.strictObject({
  chunks: z.array(z.strictObject({ document: z.string(), index: int, tokens: int })),
  tokens: int.describe('their tokens in all'),
});

const TextLogprob = z.strictObject({
  token: z.string(),
  logprob: z.number(),
  top: z.array(z.strictObject({ token: z.string(), logprob: z.number() })),
});

const resultFields = {
  answer: z.string(),
  tokens: z.array(int).describe('generated token ids'),
  mode: z.enum(BLEND_MODES as ['full', 'prefix', 'reuse', 'blend']),
  ttftMs: ms.describe("worker time to the first token's logits, cache loading included"),
  promptTokens: int,
  prefixTokens: int.describe("tokens of the template's cached prefix"),
  contextTokens: int,
  recomputedTokens: int,
  cachedTokens: int.describe('prompt tokens whose KV came from stored caches'),
  ratio: z.number().optional().describe('blend ratio used (blend only)'),
  autoRatio: z
    .strictObject({
      minRatio: z.number(),
      layerLoadMs: z.number().nullable(),
      tokenLayerMs: z.number().nullable(),
    })
    .optional()
    .describe('how ratio "auto" was decided'),
  plan: z
    .strictObject({
      chose: z.enum(['blend', 'full']),
      predictedLoadMs: z.number(),
      predictedFullMs: z.number(),
    })
    .optional()
    .describe(
      'mode left to the service: the chunk caches would load in predictedLoadMs, the prompt prefill in full in predictedFullMs; full when loading would lose',
    ),
  finishReason: z.enum(['stop', 'length']),
  template: z.string().describe('the template applied: none, chat or jinja'),
  retrieval: Retrieval.optional(),
  matched: Matched.optional().describe("the tenant's ingested chunks found in the prompt's text"),
  logprobs: z.array(TextLogprob).optional().describe('with logprobs: one per generated token'),
  explain: Explain.optional().describe('with explain: true'),
  cache: CacheStats,
};
const workerTimings = { loadMs: ms, computeMs: ms, queueMs: ms, workerMs: ms };

/** A blend job's result, as the worker stores it (core's BlendJobResult). */
const JobResult = z.strictObject({ ...resultFields, timings: z.strictObject(workerTimings) });

/** What the native query answers: the result, its job id, and the request's total time. */
export const QueryReply = z.strictObject({
  jobId: z.string(),
  ...resultFields,
  timings: z.strictObject({ ...workerTimings, totalMs: ms }),
});
export const QueryAccepted = z.strictObject({ jobId: z.string() });

export const JobReply = z.strictObject({
  jobId: z.string(),
  state: z.string().describe('waiting, active, completed, failed, … (BullMQ job states)'),
  result: QueryReply.omit({ jobId: true }).optional().describe('once completed'),
  error: z.strictObject({ code: z.string(), message: z.string() }).optional().describe('once failed'),
});

const ChunkStatus = z.strictObject({
  index: int,
  key: z.string(),
  tokens: int,
  status: z.enum(['pending', 'ready', 'failed']),
  error: z.string().optional(),
});
const documentFields = {
  id: z.string(),
  status: z.enum(['pending', 'ready', 'failed']),
  progress: z.strictObject({ ready: int, failed: int, total: int, fraction: z.number() }),
  metadata: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
  updatedAt: z.string(),
};
export const DocumentStatusReply = z.strictObject({ ...documentFields, chunks: z.array(ChunkStatus) });
const DocumentSummaryReply = z.strictObject({ ...documentFields, chunks: int.describe('chunk count') });
export const DocumentList = z.strictObject({
  documents: z.array(DocumentSummaryReply),
  nextCursor: z.string().nullable().describe('pass as cursor for the next page; null on the last'),
});
export const DocumentAccepted = z.strictObject({
  id: z.string(),
  chunks: int,
  enqueued: int.describe('precompute jobs enqueued'),
});
export const DocumentDeleted = z.strictObject({
  id: z.string(),
  deleted: z.literal(true),
  chunksDeleted: int.describe('chunk caches no other document used'),
});

export const Health = z.strictObject({ status: z.literal('ok') });
export const Ready = z.strictObject({ status: z.literal('ready'), checks: z.record(z.string(), z.string()) });

const distance = z.strictObject({
  meanKl: z.number(),
  p90Kl: z.number(),
  maxKl: z.number(),
  meanAgreement: z.number(),
  minAgreement: z.number(),
});
/** A model's stored calibration (cacheblend calibrate; core's Calibration). */
const CalibrationReply = z.strictObject({
  kvFingerprint: z.string(),
  model: z.string(),
  blend: z.strictObject({ ratio: z.number(), selection: z.string(), checkLayer: int }),
  choice: z.strictObject({
    strategy: z.enum(SELECTION_STRATEGIES),
    attention: z.enum(ATTENTION_SOURCES).nullable(),
    rule: z.string(),
    candidates: z.array(
      z.strictObject({
        name: z.string(),
        selection: z.enum(SELECTION_STRATEGIES),
        attention: z.enum(ATTENTION_SOURCES).nullable(),
        p90Kl: z.number(),
        meanKl: z.number(),
        maxKl: z.number(),
        meanAgreement: z.number(),
        worseThanReuse: int,
      }),
    ),
  }),
  sample: z.strictObject({ name: z.string(), sets: int, tokens: int }),
  blendVsFull: distance,
  reuseVsFull: distance,
  thresholds: z.strictObject({ maxMeanKl: z.number(), minMeanAgreement: z.number() }),
  flagged: z.boolean(),
  reasons: z.array(z.string()),
  measuredAt: z.string(),
});

export const ModelList = z.strictObject({
  object: z.literal('list'),
  data: z.array(
    z.strictObject({
      id: z.string(),
      object: z.literal('model'),
      created: int,
      owned_by: z.string(),
      max_model_len: int.describe('context length in tokens'),
      cacheblend: z.strictObject({
        calibration: CalibrationReply.nullable().describe('cacheblend calibrate; null when none is stored'),
        selection: z
          .strictObject({
            strategy: z.enum(SELECTION_STRATEGIES),
            attention: z.enum(ATTENTION_SOURCES).nullable(),
            from: z.enum(['calibration', 'default']),
          })
          .describe(
            "the selection blend uses when a request names none: the calibration's choice, else the default",
          ),
      }),
    }),
  ),
});

/** The `cacheblend` extension of an OpenAI reply: how the answer was computed. */
const Extension = z.strictObject({
  jobId: z.string(),
  ...JobResult.omit({ answer: true, tokens: true, finishReason: true, logprobs: true }).shape,
});
const Usage = z.strictObject({
  prompt_tokens: int,
  completion_tokens: int,
  total_tokens: int,
  prompt_tokens_details: z.strictObject({ cached_tokens: int }),
});
const top = z.strictObject({ token: z.string(), logprob: z.number(), bytes: z.array(int) });
const ChatLogprobs = z.strictObject({
  content: z.array(top.extend({ top_logprobs: z.array(top) })),
  refusal: z.null(),
});
const CompletionLogprobs = z.strictObject({
  tokens: z.array(z.string()),
  token_logprobs: z.array(z.number()),
  top_logprobs: z.array(z.record(z.string(), z.number())),
  text_offset: z.array(int),
});
const openAiFields = { id: z.string(), created: int, model: z.string(), usage: Usage, cacheblend: Extension };
const finish = z.enum(['stop', 'length']);

export const ChatCompletion = z.strictObject({
  ...openAiFields,
  object: z.literal('chat.completion'),
  choices: z.array(
    z.strictObject({
      index: int,
      message: z.strictObject({ role: z.literal('assistant'), content: z.string() }),
      finish_reason: finish,
      logprobs: ChatLogprobs.nullable().describe('with logprobs: true'),
    }),
  ),
});
export const Completion = z.strictObject({
  ...openAiFields,
  object: z.literal('text_completion'),
  choices: z.array(
    z.strictObject({
      index: int,
      text: z.string(),
      finish_reason: finish,
      logprobs: CompletionLogprobs.nullable().describe('with logprobs: N'),
    }),
  ),
});

export type QueryReplyBody = z.infer<typeof QueryReply>;
export type QueryAcceptedBody = z.infer<typeof QueryAccepted>;
export type DocumentAcceptedBody = z.infer<typeof DocumentAccepted>;
export type DocumentDeletedBody = z.infer<typeof DocumentDeleted>;
export type DocumentListBody = z.infer<typeof DocumentList>;
export type ModelListBody = z.infer<typeof ModelList>;
export type HealthBody = z.infer<typeof Health>;
export type ReadyBody = z.infer<typeof Ready>;
export type JobReplyBody = z.infer<typeof JobReply>;
export type ExtensionBody = z.infer<typeof Extension>;

// Where core defines a reply's type, the schema must describe exactly that type: these fail to compile
// when a field is added to, removed from or changed in one and not the other.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const same = <T extends true>(): T | undefined => undefined;
same<Same<z.infer<typeof JobResult>, BlendJobResult>>();
same<Same<z.infer<typeof DocumentStatusReply>, DocumentStatus>>();
same<Same<z.infer<typeof DocumentSummaryReply>, DocumentSummary>>();
same<Same<z.infer<typeof CalibrationReply>, Calibration>>();
