/**
 * Running a blend job on the inference thread: validate its planned prompt (prompt-plan.ts), open the
 * caches its mode reads through the tiers, blend and decode (streaming text to the worker's port, stopping
 * when cancelled), and describe the result.
 */
import type { MessagePort } from 'node:worker_threads';
import { tokenIdsOnly } from '../blend/index.js';
import type { TieredChunkLoader, LoadedChunk } from '../cache/tiered-loader.js';
import { emptyCacheStats, type CacheStats } from '../cache/types.js';
import { CancelledError, errorMessage } from '../errors.js';
import type { AutoRatio, BlendChunkRef, BlendJobData, BlendProgress } from '../queue/contracts.js';
import { blendOptions } from './blend-plan.js';
import { checkPlannedPrompt, plannedTokens } from './prompt-plan.js';
import { costPlan, learnFromPrefill } from './cost-plan.js';
import type { BlendThreadResult, EngineContext } from './engine-context.js';
import { explainContext } from './explain.js';
import { blendAndDecode, type BlendAnswer } from './answer.js';
import { logprobTexts } from './answer-text.js';
import type { PromptParts } from './answer.js';
import { roundMs } from '../util/time.js';

/**
 * The caches a mode reads: none for full (tokens only); for prefix the template prefix's, or without one
 * the first chunk's (the rest is prefilled); the prefix's and every chunk's for reuse and blend. `opened`
 * are the ones read through the tiers.
 */
async function openSources(
  loader: TieredChunkLoader,
  mode: BlendJobData['mode'],
  prefixRef: BlendChunkRef | null,
  refs: BlendChunkRef[],
  stats: CacheStats,
): Promise<{ parts: Omit<PromptParts, 'suffixIds'>; opened: LoadedChunk[] }> {
  const open = (r: BlendChunkRef) => loader.open(r.key, r.tokenIds, stats);
  const tokensOnly = (r: BlendChunkRef) => tokenIdsOnly(r.tokenIds);
  if (mode === 'full') {
    return {
      parts: { prefix: prefixRef && tokensOnly(prefixRef), chunks: refs.map(tokensOnly) },
      opened: [],
    };
  }
  if (mode === 'prefix') {
    if (prefixRef) {
      const prefix = await open(prefixRef);
      return { parts: { prefix, chunks: refs.map(tokensOnly) }, opened: [prefix] };
    }
    const first = refs.length ? [await open(refs[0])] : [];
    return { parts: { prefix: null, chunks: [...first, ...refs.slice(1).map(tokensOnly)] }, opened: first };
  }
  const [prefix, ...chunks] = await Promise.all([prefixRef && open(prefixRef), ...refs.map(open)]);
  const all = chunks as LoadedChunk[];
  return { parts: { prefix, chunks: all }, opened: prefix ? [prefix, ...all] : all };
}

/**
 * A text callback that posts the answer's new text to `port` as it grows (see AnswerText.streamable: a
 * partial UTF-8 character or a possible stop sequence is held back); text already sent is never retracted.
 */
function textStreamer(port: MessagePort): (text: string) => void {
  let sent = '';
  let tokens = 0;
  return (stable) => {
    tokens++;
    if (stable.length > sent.length && stable.startsWith(sent)) {
      const msg: BlendProgress = { delta: stable.slice(sent.length), tokens };
      sent = stable;
      port.postMessage(msg);
    }
  };
}

/** The per-token text callback, checking for cancellation first (decoding stops at the next token). */
function withCancellation(
  stopIfCancelled: () => void,
  onText: ((text: string) => void) | undefined,
): (text: string) => void {
  return (text) => {
    stopIfCancelled();
    onText?.(text);
  };
}

/** Throws CancelledError once the worker has set the job's cancel flag. */
function cancellation(cancel: Int32Array | undefined): () => void {
  return () => {
    if (cancel && Atomics.load(cancel, 0) === 1) throw new CancelledError('the query was cancelled');
  };
}

export async function runBlend(
  ctx: EngineContext,
  job: BlendJobData,
  port?: MessagePort,
  cancel?: Int32Array,
): Promise<BlendThreadResult> {
  const { engine, loader, log } = ctx;
  const stopIfCancelled = cancellation(cancel);
  stopIfCancelled(); // it may have waited behind other calls on this thread
  const { prompt } = job;
  checkPlannedPrompt(prompt, {
    jobFingerprint: job.fingerprint,
    fingerprint: engine.kvFingerprint,
    vocabSize: engine.config.vocabSize,
    contextLength: engine.config.maxPositionEmbeddings,
    maxTokens: job.maxTokens,
  });
  const stats = emptyCacheStats();
  const t0 = performance.now();
  const { parts, opened } = await openSources(loader, job.mode, prompt.prefix, prompt.chunks, stats);
  const openMs = performance.now() - t0;
  stopIfCancelled();
  const plan = job.mode === 'blend' && !job.modePinned ? costPlan(ctx, opened, plannedTokens(prompt)) : null;
  const planned = plan?.chose === 'full' ? { ...job, mode: 'full' as const } : job;
  const { opts, autoRatio } = blendOptions(ctx, planned, opened);
  const sampling = {
    maxTokens: job.maxTokens,
    temperature: job.temperature,
    topK: job.topK,
    topP: job.topP,
    seed: job.seed,
    stop: job.stop,
    ...(job.logprobs !== undefined && { logprobs: job.logprobs }),
  };
  const answer = await blendAndDecode(
    engine,
    { ...parts, suffixIds: prompt.suffixIds },
    opts,
    sampling,
    withCancellation(stopIfCancelled, port && textStreamer(port)),
  );
  learnFromPrefill(ctx, answer.prefill);
  // Fill the LRU and disk tiers with whole objects (blend skips the layers below its check layer).
  await Promise.all(
    opened.map((c) =>
      c.complete().catch((err) =>
        log.warn('could not complete a chunk cache', {
          key: c.key,
          requestId: job.requestId,
          error: errorMessage(err),
        }),
      ),
    ),
  );
  const cachedTokens = opened.filter((c) => c.tier !== 'computed').reduce((a, c) => a + c.tokenIds.length, 0);
  let result = blendResult(planned, answer, prompt.template, openMs, stats, autoRatio, cachedTokens);
  // Said only where it changed the mode: a blend served as asked needs no explanation.
  if (plan?.chose === 'full') result = { ...result, plan };
  if (answer.logprobs) {
    const tail = [...(parts.chunks.at(-1)?.tokenIds ?? parts.prefix?.tokenIds ?? []), ...prompt.suffixIds];
    result = {
      ...result,
      logprobs: logprobTexts(engine.model.tokenizer, tail, answer.tokens, answer.logprobs),
    };
  }
  if (job.explain) {
    const chunkIds = prompt.chunks.map((r) => r.tokenIds);
    result = { ...result, explain: explainContext(engine.model.tokenizer, chunkIds, answer.prefill) };
  }
  return result;
}

function blendResult(
  job: BlendJobData,
  { prefill, tokens, text, finishReason, decodeMs }: BlendAnswer,
  template: string,
  openMs: number,
  stats: CacheStats,
  autoRatio: AutoRatio | undefined,
  cachedTokens: number,
): BlendThreadResult {
  return {
    answer: text,
    tokens,
    mode: job.mode,
    finishReason,
    template,
    ttftMs: roundMs(openMs + prefill.timings.ttftMs),
    promptTokens: prefill.promptTokens,
    prefixTokens: prefill.prefixTokens,
    contextTokens: prefill.contextTokens,
    recomputedTokens: prefill.recomputedTokens,
    cachedTokens,
    ...(job.mode === 'blend' && { ratio: prefill.ratio }),
    ...(job.mode === 'blend' && autoRatio && { autoRatio }),
    timings: {
      loadMs: roundMs(openMs + prefill.timings.loadWaitMs),
      computeMs: roundMs(prefill.timings.computeMs + decodeMs),
    },
    cache: stats,
    ...(job.retrieval && { retrieval: job.retrieval }),
    ...(job.matched && { matched: job.matched }),
  };
}
