/**
 * From a query (native or OpenAI-compatible) to a blend job whose prompt is planned here, once
 * (core/inference/prompt-plan.ts): the template's frame sizes the context budget (model context − BOS −
 * template − question − maxTokens), retrieval fills it from the named documents or the corpus — or raw
 * chunks, or the stored chunks found in the prompt's own text, make the context.
 *
 * Everything is measured here, before anything is queued: text too long to fit the context by its length
 * alone is refused without tokenizing it (413); the frame and raw chunks are tokenized once, on the text
 * thread; named documents are sized by their chunk counts before their lists are read. So the job that is
 * enqueued fits the model, and its payload is bounded by the context, not by the request.
 */
import type { BlendMode } from '../core/blend/index.js';
import { checkContextFits } from '../core/inference/context-fit.js';
import { plannedTokens } from '../core/inference/prompt-plan.js';
import { DEFAULT_TENANT } from '../core/config/index.js';
import { cacheSalt } from '../core/documents/names.js';
import type { ModelIdentity } from '../core/documents/text.js';
import { TooLargeError } from '../core/errors.js';
import type { ChatMessage, TemplateName } from '../core/model/template.js';
import type { BlendJobData, BlendSelection } from '../core/queue/contracts.js';
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
  /**
   * With neither `documents` nor `chunks`: rank the tenant's whole corpus (the native query's default).
   * False leaves the prompt as it is (the OpenAI routes, unless `cacheblend.retrieve` asks).
   */
  searchCorpus: boolean;
  topK?: number;
  order: ChunkOrder;
  /** Absent: the cost plan may run blend in full (a given mode is pinned). */
  mode?: BlendMode;
  ratio?: number | 'auto';
  selection?: BlendSelection;
  maxTokens: number;
  temperature: number;
  topP?: number;
  sampleTopK?: number;
  stop?: string[];
  seed: number;
  /** Log-probabilities of the generated tokens, with this many alternatives each. */
  logprobs?: number;
  stream: boolean;
  /** Id of the HTTP request, carried into the job for log correlation. */
  requestId?: string;
  /** Request field names for errors (`question` is `messages` or `prompt` on the OpenAI routes). */
  fields?: { question: string; maxTokens: string };
  /** The caller's tenant (default: DEFAULT_TENANT). */
  tenant?: string;
  /** Ask the worker for the context's tokens and which were recomputed. */
  explain?: boolean;
}

export async function planQuery(deps: ApiDeps, q: QueryInput): Promise<BlendJobData> {
  const model = requireModel(deps);
  const tenant = q.tenant ?? DEFAULT_TENANT;
  const fields = q.fields ?? { question: 'question', maxTokens: 'maxTokens' };
  const salt = cacheSalt(tenant, deps.config.shareChunkCache);
  const frame = await planFrame(model, q, salt, fields.question);
  const fixed = plannedTokens(frame);
  checkContextFits(fixed, q.maxTokens, model.contextLength, {
    prompt: fields.question,
    maxTokens: fields.maxTokens,
  });
  const budget = model.contextLength - fixed - q.maxTokens;
  const base = jobBase(q, tenant, model.fingerprint);
  if (q.chunks) {
    const chunks = await planRawChunks(model, q.chunks, budget, salt);
    return { ...base, prompt: { ...frame, chunks, promptField: 'chunks' }, documents: [] };
  }
  if (!q.documents) {
    const matched = await matchedPrompt(deps, model, q, tenant, salt);
    if (matched) return { ...base, ...matched, documents: [] };
    if (!q.searchCorpus) return { ...base, prompt: { ...frame, promptField: 'documents' }, documents: [] };
  }
  const { refs, summary } = await deps.retriever.retrieve({
    question: q.question,
    tenant,
    documents: q.documents,
    budget,
    maxChunks: deps.config.maxQueryChunks,
    topK: q.topK,
    order: q.order,
    readyWaitMs: deps.config.queryTimeoutMs,
    fingerprint: model.fingerprint,
  });
  return {
    ...base,
    prompt: { ...frame, chunks: refs, promptField: 'documents' },
    documents: q.documents ?? [],
    retrieval: summary,
  };
}

/** What a job carries besides its prompt: the model, the mode and its pins, sampling, streaming, ids. */
function jobBase(q: QueryInput, tenant: string, fingerprint: string) {
  return {
    question: q.question,
    tenant,
    fingerprint,
    mode: q.mode ?? 'blend',
    // A mode, a ratio or a selection asked for is the request's own plan: the cost plan leaves it alone.
    ...((q.mode !== undefined || q.ratio !== undefined || q.selection !== undefined) && { modePinned: true }),
    ...(q.ratio !== undefined && { ratio: q.ratio }),
    ...(q.selection && { selection: q.selection }),
    maxTokens: q.maxTokens,
    temperature: q.temperature,
    ...(q.topP !== undefined && { topP: q.topP }),
    ...(q.sampleTopK !== undefined && { topK: q.sampleTopK }),
    ...(q.stop?.length && { stop: q.stop }),
    seed: q.seed,
    ...(q.logprobs !== undefined && { logprobs: q.logprobs }),
    stream: q.stream,
    ...(q.requestId !== undefined && { requestId: q.requestId }),
    ...(q.explain && { explain: true }),
  };
}

/**
 * Stored chunks pasted into the prompt (its system prompt, earlier turns or question), found by their text
 * and served from their caches: the rendered prompt split at them (see core/retrieval/match-prompt.ts),
 * planned as segments (the template applied already) and the question's remaining text.
 */
async function matchedPrompt(
  deps: ApiDeps,
  model: ModelIdentity,
  q: QueryInput,
  tenant: string,
  salt: string,
) {
  const frame = await model.render({
    template: q.template,
    system: q.system,
    history: q.history,
    question: q.question,
    joined: true,
  });
  const pieces = frame.prefix ? [frame.prefix, frame.suffix] : [frame.suffix];
  const m = await deps.retriever.match(pieces, tenant, deps.config.queryTimeoutMs);
  if (!m) return null;
  // The template is applied already: what it was is reported, the worker frames nothing more.
  const template = frame.template === 'none' ? ('none' as const) : ('chat' as const);
  const prompt = await model.planMatched(
    { template, segments: m.segments, question: m.question },
    salt,
    'question',
  );
  return { prompt, matched: m.matched };
}

/**
 * The template's frame around the question, planned. Text whose length alone exceeds the context is
 * refused before it is tokenized; a frame that does not fit the context is a 413 naming the question.
 */
async function planFrame(model: ModelIdentity, q: QueryInput, salt: string, field: string) {
  const chars =
    q.question.length + (q.system?.length ?? 0) + (q.history ?? []).reduce((a, m) => a + m.content.length, 0);
  const tooLong = (what: string) =>
    new TooLargeError(
      `${field}: ${what}, more than the model's context of ${model.contextLength} tokens holds`,
    );
  if (chars > model.contextLength * model.maxTokenChars) throw tooLong(`${chars} characters`);
  const spec = { template: q.template, system: q.system, history: q.history, question: q.question };
  const frame = await model.planFrame(spec, salt, field);
  const fixed = plannedTokens(frame);
  if (fixed > model.contextLength) throw tooLong(`the prompt's frame takes ${fixed} tokens`);
  return frame;
}

/** Raw chunks, planned; they must fit what the context leaves: measured by length first, then in tokens (413). */
async function planRawChunks(model: ModelIdentity, chunks: string[], budget: number, salt: string) {
  const chars = chunks.reduce((a, c) => a + c.length, 0);
  const over = (what: string) =>
    new TooLargeError(`chunks: ${what}, more than the ${budget} tokens the context leaves for them`);
  if (chars > budget * model.maxTokenChars) throw over(`${chars} characters`);
  const refs = await model.planChunkTexts(chunks, salt);
  if (refs.reduce((a, r) => a + r.tokenIds.length, 0) > budget) throw over('the chunks take more tokens');
  return refs;
}

/** `stop` as a list (OpenAI allows one string or several). */
export function stopList(stop: string | string[] | null | undefined): string[] | undefined {
  return stop == null ? undefined : typeof stop === 'string' ? [stop] : stop;
}
