/**
 * From a query (native or OpenAI-compatible) to a blend job: the template's frame sizes the context budget
 * (model context − BOS − template − question − maxTokens), retrieval fills it from the named documents or
 * the corpus — or raw chunks are passed to the worker as given.
 *
 * Everything is measured here, before anything is queued: text too long to fit the context by its length
 * alone is refused without tokenizing it (413); the question's frame and raw chunks are counted in tokens
 * on the text thread; named documents are sized by their chunk counts before their lists are read. So the
 * job that is enqueued fits the model, and its payload is bounded by the context, not by the request.
 */
import type { BlendMode } from '../core/blend/index.js';
import { checkContextFits } from '../core/inference/context-fit.js';
import { DEFAULT_TENANT } from '../core/config/index.js';
import { cacheSalt } from '../core/documents/names.js';
import type { ModelIdentity } from '../core/documents/text.js';
import { invalidField, tooLargeField } from '../core/errors.js';
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
  const fixed = await frameTokens(model, q, fields.question);
  checkContextFits(fixed, q.maxTokens, model.contextLength, {
    prompt: fields.question,
    maxTokens: fields.maxTokens,
  });
  const budget = model.contextLength - fixed - q.maxTokens;
  const salt = cacheSalt(tenant, deps.config.shareChunkCache);
  const base = {
    question: q.question,
    ...(q.system !== undefined && { system: q.system }),
    ...(q.history?.length && { history: q.history }),
    template: q.template,
    tenant,
    ...(salt && { salt }),
    fingerprint: model.fingerprint,
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
  if (q.chunks) {
    await checkRawChunks(model, q.chunks, budget);
    return { ...base, chunks: [], chunkTexts: q.chunks, documents: [] };
  }
  if (!q.documents) {
    const matched = await matchedPrompt(deps, model, q, tenant);
    if (matched) return { ...base, ...matched };
    if (!q.searchCorpus) return { ...base, chunks: [], documents: [] };
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
  return { ...base, chunks: refs, documents: q.documents ?? [], retrieval: summary };
}

/**
 * Stored chunks pasted into the prompt (its system prompt, earlier turns or question), found by their text
 * and served from their caches: the rendered prompt split at them (see core/retrieval/match-prompt.ts).
 * The job then carries the whole prompt as segments and the question's remaining text, framed already.
 */
async function matchedPrompt(deps: ApiDeps, model: ModelIdentity, q: QueryInput, tenant: string) {
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
  return {
    question: m.question,
    system: undefined,
    history: undefined,
    // The template is applied already: what it was is reported, the worker frames nothing more.
    template: frame.template === 'none' ? ('none' as const) : ('chat' as const),
    chunks: [],
    segments: m.segments,
    matched: m.matched,
    documents: [],
  };
}

/**
 * BOS + the template's frame + the question, in tokens. Text whose length alone exceeds the context is
 * refused before it is tokenized; a frame that does not fit the context is a 413 naming the question.
 */
async function frameTokens(model: ModelIdentity, q: QueryInput, field: string): Promise<number> {
  const chars =
    q.question.length + (q.system?.length ?? 0) + (q.history ?? []).reduce((a, m) => a + m.content.length, 0);
  const tooLong = (what: string) =>
    tooLargeField(field, `${what}, more than the model's context of ${model.contextLength} tokens holds`);
  if (chars > model.contextLength * model.maxTokenChars) throw tooLong(`${chars} characters`);
  const frame = await model.frame({
    template: q.template,
    system: q.system,
    history: q.history,
    question: q.question,
  });
  if (frame.suffixTokens === 0) throw invalidField(field, 'has no tokens');
  const fixed = 1 + frame.prefixTokens + frame.suffixTokens;
  if (fixed > model.contextLength) throw tooLong(`the prompt's frame takes ${fixed} tokens`);
  return fixed;
}

/** Raw chunks must fit what the context leaves: measured by length first, then in tokens (413 if not). */
async function checkRawChunks(model: ModelIdentity, chunks: string[], budget: number): Promise<void> {
  const chars = chunks.reduce((a, c) => a + c.length, 0);
  const over = (what: string) =>
    tooLargeField('chunks', `${what}, more than the ${budget} tokens the context leaves for them`);
  if (chars > budget * model.maxTokenChars) throw over(`${chars} characters`);
  let tokens = 0;
  for (const c of chunks) {
    const n = await model.countTokens(c, budget - tokens);
    if (n === null || tokens + n > budget) throw over('the chunks take more tokens');
    tokens += n;
  }
}

/** `stop` as a list (OpenAI allows one string or several). */
export function stopList(stop: string | string[] | null | undefined): string[] | undefined {
  return stop == null ? undefined : typeof stop === 'string' ? [stop] : stop;
}
