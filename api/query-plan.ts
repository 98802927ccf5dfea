/**
 * From a query (native or OpenAI-compatible) to a blend job: the template's frame sizes the context budget
 * (model context − BOS − template − question − maxTokens), retrieval fills it from the named documents or
 * the corpus — or raw chunks are passed to the worker as given.
 */
import type { BlendMode } from '../core/blend/index.js';
import { checkContextFits } from '../core/inference/pipeline.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { ChatMessage, TemplateName } from '../core/model/template.js';
import type { BlendJobData } from '../core/queue/contracts.js';
import type { ChunkOrder } from '../core/retrieval/index.js';
import { requireModel, type ApiDeps } from './deps.js';

/** A query, whichever endpoint it came through. */
export interface QueryInput {
  question: string;
  system?: string;
  history?: ChatMessage[];
  template: TemplateName;
  documents?: string[];
  chunks?: string[];
  topK?: number;
  order: ChunkOrder;
  mode: BlendMode;
  ratio?: number | 'auto';
  maxTokens: number;
  temperature: number;
  topP?: number;
  sampleTopK?: number;
  stop?: string[];
  seed: number;
  stream: boolean;
  /** Id of the HTTP request, carried into the job for log correlation. */
  requestId?: string;
  /** Request field names for errors (`question` is `messages` or `prompt` on the OpenAI routes). */
  fields?: { question: string; maxTokens: string };
}

export async function planQuery(deps: ApiDeps, q: QueryInput): Promise<BlendJobData> {
  const model = requireModel(deps);
  const fields = q.fields ?? { question: 'question', maxTokens: 'maxTokens' };
  const frame = await model.frame({
    template: q.template,
    system: q.system,
    history: q.history,
    question: q.question,
  });
  if (frame.suffixTokens === 0) throw new InvalidArgumentError(`${fields.question}: has no tokens`);
  const fixed = 1 + frame.prefixTokens + frame.suffixTokens;
  checkContextFits(fixed, q.maxTokens, model.contextLength, {
    prompt: fields.question,
    maxTokens: fields.maxTokens,
  });
  const base = {
    question: q.question,
    ...(q.system !== undefined && { system: q.system }),
    ...(q.history?.length && { history: q.history }),
    template: q.template,
    fingerprint: model.fingerprint,
    mode: q.mode,
    ...(q.ratio !== undefined && { ratio: q.ratio }),
    maxTokens: q.maxTokens,
    temperature: q.temperature,
    ...(q.topP !== undefined && { topP: q.topP }),
    ...(q.sampleTopK !== undefined && { topK: q.sampleTopK }),
    ...(q.stop?.length && { stop: q.stop }),
    seed: q.seed,
    stream: q.stream,
    ...(q.requestId !== undefined && { requestId: q.requestId }),
  };
  if (q.chunks) return { ...base, chunks: [], chunkTexts: q.chunks, documents: [] };
  const { refs, summary } = await deps.retriever.retrieve({
    question: q.question,
    documents: q.documents,
    budget: model.contextLength - fixed - q.maxTokens,
    topK: q.topK,
    order: q.order,
    readyWaitMs: deps.config.queryTimeoutMs,
  });
  return { ...base, chunks: refs, documents: q.documents ?? [], retrieval: summary };
}

/** `stop` as a list (OpenAI allows one string or several). */
export function stopList(stop: string | string[] | null | undefined): string[] | undefined {
  return stop == null ? undefined : typeof stop === 'string' ? [stop] : stop;
}
