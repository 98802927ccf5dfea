/**
 * OpenAI-compatible endpoints, so OpenAI clients (the `openai` packages, LangChain, LlamaIndex) can talk to
 * the service: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`, each answered whole or
 * streamed as SSE (`data: {chunk}` lines, then `data: [DONE]`). Documents ride on extension fields:
 * `documents` (ids: retrieval over them), `chunks` (raw texts) and `cacheblend: {mode, ratio, topK, order,
 * template, retrieve}`; with neither `documents` nor `chunks` the prompt is answered as it is (the corpus
 * is searched only with `cacheblend.retrieve: true`). Errors take OpenAI's
 * shape: `{"error": {"message", "type", "code", "param"}}`.
 *
 * Response shapes (OpenAI's):
 *   chat:        {id, object: "chat.completion", created, model, choices: [{index, message: {role, content},
 *                finish_reason, logprobs: null}], usage: {prompt_tokens, completion_tokens, total_tokens},
 *                cacheblend: {jobId, mode, ratio?, autoRatio?, template, retrieval?, ttftMs, cache, …}}
 *   completion:  the same with object "text_completion" and choices [{index, text, finish_reason, logprobs}]
 *   chunks:      object "chat.completion.chunk" (choices[].delta) or "text_completion" (choices[].text)
 */
import { randomInt } from 'node:crypto';
import path from 'node:path';
import { Router, type Response } from 'express';
import type { z } from 'zod';
import { readCalibration, servedSelection } from '../../core/eval/calibrate.js';
import type { ChatMessage } from '../../core/model/template.js';
import { requestIdOf } from '../access-log.js';
import { requireModel, type ApiDeps } from '../deps.js';
import { HttpError } from '../errors.js';
import { refuseUnsupported } from '../openai/fields.js';
import { choice, extension, logprobsOf, openAiError, usage, type Kind } from '../openai/shape.js';
import { tenantOf } from '../middleware/auth.js';
import { clientGone, enqueueQuery, jobFailure, newJobId, runStreamed, waitForJob } from '../query-jobs.js';
import { planQuery, stopList, type QueryInput } from '../query-plan.js';
import { ChatCompletionBody, CompletionBody, parseBody } from '../schemas.js';
import type { ModelListBody } from '../replies.js';
import { EventStream } from '../sse.js';

type OpenAiBody = z.infer<typeof ChatCompletionBody> | z.infer<typeof CompletionBody>;

/** Tokens generated when a request sets no max_tokens: OpenAI's "as many as fit", bounded. */
const DEFAULT_MAX_TOKENS = 256;

export function openAiRouter(deps: ApiDeps): Router {
  const router = Router();
  const created = Math.floor(Date.now() / 1000);
  const modelId = path.basename(deps.config.model);

  // `cacheblend.calibration`: the model's stored calibration (cacheblend calibrate), null when there is none;
  // `cacheblend.selection`: what blend uses when a request names none (the calibration's choice, else the default).
  router.get('/models', async (_req, res) => {
    const model = requireModel(deps);
    const calibration = await readCalibration(deps.store, model.fingerprint);
    res.json({
      object: 'list',
      data: [
        {
          id: modelId,
          object: 'model',
          created,
          owned_by: 'cacheblend',
          max_model_len: model.contextLength,
          cacheblend: {
            calibration,
            selection: servedSelection(calibration),
          },
        },
      ],
    } satisfies ModelListBody);
  });

  for (const kind of ['chat', 'completion'] as const) {
    router.post(kind === 'chat' ? '/chat/completions' : '/completions', async (req, res) => {
      refuseUnsupported(kind, req.body);
      const body = parseBody(kind === 'chat' ? ChatCompletionBody : CompletionBody, req.body);
      if (body.model !== modelId && body.model !== deps.config.model) {
        throw new HttpError(
          404,
          'model_not_found',
          `model: "${body.model}" is not served here (${modelId} is)`,
          {
            field: 'model',
          },
        );
      }
      const input = { ...queryInput(deps, kind, body), requestId: requestIdOf(req), tenant: tenantOf(res) };
      const reply = {
        kind,
        id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${newJobId()}`,
        model: modelId,
        includeUsage: body.stream_options?.include_usage === true,
      };
      if (input.stream) await streamCompletion(deps, res, reply, input);
      else await answerCompletion(deps, res, reply, input);
    });
  }

  return router;
}

/** The query an OpenAI request asks for. */
function queryInput(deps: ApiDeps, kind: Kind, body: OpenAiBody): QueryInput {
  const ext = body.cacheblend ?? {};
  const requested = body.max_completion_tokens ?? body.max_tokens;
  const maxTokens =
    requested ?? Math.min(DEFAULT_MAX_TOKENS, Math.floor(requireModel(deps).contextLength / 2));
  const conversation =
    'messages' in body
      ? splitConversation(body.messages)
      : { question: typeof body.prompt === 'string' ? body.prompt : body.prompt[0] };
  return {
    ...conversation,
    // A completion continues its prompt as given; a chat is framed by the model's chat template.
    template: ext.template ?? (kind === 'chat' ? 'auto' : 'none'),
    documents: body.documents,
    chunks: body.chunks,
    // A plain OpenAI prompt is answered as it is: retrieval only when the request asks for it.
    searchCorpus: ext.retrieve === true,
    topK: ext.topK,
    order: ext.order ?? 'document',
    mode: ext.mode,
    ratio: ext.ratio,
    selection: ext.selection,
    maxTokens,
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? undefined,
    sampleTopK: body.top_k ?? undefined,
    stop: stopList(body.stop),
    // An unseeded request draws its own seed: samples differ from request to request, as OpenAI's do.
    seed: body.seed == null ? randomInt(2 ** 32) : body.seed >>> 0,
    ...logprobsField(body),
    stream: body.stream ?? false,
    fields: { question: kind === 'chat' ? 'messages' : 'prompt', maxTokens: 'max_tokens' },
  };
}

/** How many alternatives per token the request asks logprobs for; nothing when it asks for none. */
function logprobsField(body: OpenAiBody): { logprobs?: number } {
  if ('messages' in body) return body.logprobs ? { logprobs: body.top_logprobs ?? 0 } : {};
  return body.logprobs == null ? {} : { logprobs: body.logprobs };
}

type Message = z.infer<typeof ChatCompletionBody>['messages'][number];

/** System (and developer) messages make the system prompt; the last user message is the question. */
function splitConversation(messages: Message[]): {
  system?: string;
  history: ChatMessage[];
  question: string;
} {
  const text = (m: Message) =>
    typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('');
  const last = messages[messages.length - 1];
  if (last.role !== 'user') {
    throw new HttpError(400, 'INVALID_ARGUMENT', "messages: the last message must be the user's", {
      field: 'messages',
    });
  }
  const system = messages.filter((m) => m.role === 'system' || m.role === 'developer').map(text);
  const history = messages
    .slice(0, -1)
    .filter((m) => m.role === 'user' || m.role === 'assistant')
    .map((m) => ({ role: m.role as 'user' | 'assistant', content: text(m) }));
  return { ...(system.length && { system: system.join('\n\n') }), history, question: text(last) };
}

interface ReplyIds {
  kind: Kind;
  id: string;
  model: string;
  /** Streaming: end with a chunk of the usage (stream_options.include_usage). */
  includeUsage: boolean;
}

async function answerCompletion(
  deps: ApiDeps,
  res: Response,
  ids: ReplyIds,
  input: QueryInput,
): Promise<void> {
  const gone = clientGone(res); // a client that leaves cancels its query
  const data = await planQuery(deps, input);
  const jobId = newJobId();
  const r = await waitForJob(deps, await enqueueQuery(deps, jobId, data), jobId, gone);
  res.json({
    id: ids.id,
    object: ids.kind === 'chat' ? 'chat.completion' : 'text_completion',
    created: Math.floor(Date.now() / 1000),
    model: ids.model,
    choices: [choice(ids.kind, r.answer, r.finishReason, false, logprobsOf(ids.kind, r.logprobs))],
    usage: usage(r),
    cacheblend: extension(r, jobId),
  });
}

async function streamCompletion(
  deps: ApiDeps,
  res: Response,
  ids: ReplyIds,
  input: QueryInput,
): Promise<void> {
  const gone = clientGone(res); // a client that leaves cancels its query
  const data = await planQuery(deps, input);
  const jobId = newJobId();
  const created = Math.floor(Date.now() / 1000);
  const object = ids.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const stream = new EventStream(res);
  const send = (payload: unknown) => stream.send(payload);
  // With include_usage every chunk carries `usage: null` and one last chunk the usage (OpenAI's contract).
  const chunk = (c: object, extra: object = ids.includeUsage ? { usage: null } : {}) =>
    send({ id: ids.id, object, created, model: ids.model, choices: [c], ...extra });
  try {
    const r = await runStreamed(
      deps,
      jobId,
      data,
      {
        started: () => {
          stream.open();
          if (ids.kind === 'chat')
            chunk({
              index: 0,
              delta: { role: 'assistant', content: '' },
              finish_reason: null,
              logprobs: null,
            });
        },
        delta: (text) => chunk(choice(ids.kind, text, null, true)),
      },
      gone,
    );
    const withUsage = ids.includeUsage ? { usage: null } : {};
    chunk(choice(ids.kind, null, r.finishReason, true), { ...withUsage, cacheblend: extension(r, jobId) });
    if (ids.includeUsage) {
      send({ id: ids.id, object, created, model: ids.model, choices: [], usage: usage(r) });
    }
  } catch (err) {
    if (!stream.isOpen) throw err;
    send({ error: openAiError(err instanceof HttpError ? err : jobFailure(err, jobId)) });
  }
  stream.end('data: [DONE]\n\n');
}
