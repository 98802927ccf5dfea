/**
 * Planning a blend job on the inference thread: its prompt frame and chunk references (stored chunks, raw
 * chunk texts and a matched prompt's segments, tokenized and keyed here), checked against the model's
 * context, and the blend options its ratio asks for.
 */
import type { BlendOptions } from '../blend/index.js';
import type { LoadedChunk } from '../cache/tiered-loader.js';
import { KvMismatchError, invalidField } from '../errors.js';
import { chunkKey, kvBytesPerToken } from '../kv/format.js';
import { frameIds, type FrameIds } from '../model/template.js';
import type { Tokenizer } from '../model/types.js';
import type { AutoRatio, BlendChunkRef, BlendJobData, PromptSegment } from '../queue/contracts.js';
import type { EngineContext } from './engine-context.js';
import { checkContextFits } from './context-fit.js';
import { promptLength } from './prompt-parts.js';

/** Token ids as a chunk reference, keyed like any stored chunk of this model (with the tenant's salt). */
function keyedRef(fingerprint: string, tokenIds: number[], salt = ''): BlendChunkRef {
  return { key: chunkKey(fingerprint, tokenIds, salt), tokenIds };
}

/** Raw chunk texts as chunk references: tokenized here, keyed like any stored chunk (with the tenant's salt). */
function rawChunkRefs(tok: Tokenizer, fingerprint: string, texts: string[] = [], salt = ''): BlendChunkRef[] {
  return texts.map((text, i) => {
    const tokenIds = tok.encode(text);
    if (tokenIds.length === 0) throw invalidField(`chunks.${i}`, 'has no tokens');
    return keyedRef(fingerprint, tokenIds, salt);
  });
}

/**
 * A matched prompt's segments as chunk references: stored chunks as they are, the text between them
 * tokenized on its own and keyed like a raw chunk (text that encodes to no token is left out).
 */
function segmentRefs(
  tok: Tokenizer,
  fingerprint: string,
  segments: PromptSegment[],
  salt = '',
): BlendChunkRef[] {
  return segments.flatMap((s) => {
    if (!('text' in s)) return [s];
    const tokenIds = tok.encode(s.text);
    return tokenIds.length ? [keyedRef(fingerprint, tokenIds, salt)] : [];
  });
}

/** A matched prompt's frame: its segments hold the template already; the question's text ends it. */
function matchedFrame(tok: Tokenizer, job: BlendJobData): FrameIds {
  return {
    template: job.template === 'chat' ? 'chat' : 'none',
    prefixIds: [],
    suffixIds: tok.encode(job.question),
  };
}

/** The job's prompt frame and chunk references, checked against the model's context. */
export function planPrompt(ctx: EngineContext, job: BlendJobData) {
  const { model, config: cfg, kvFingerprint } = ctx.engine;
  if (job.fingerprint !== kvFingerprint) {
    throw new KvMismatchError(
      `the job was made for model ${job.fingerprint.slice(0, 12)}, this worker runs ${kvFingerprint.slice(0, 12)}`,
    );
  }
  const frame = job.segments
    ? matchedFrame(model.tokenizer, job)
    : frameIds(model.tokenizer, {
        template: job.template ?? 'auto',
        system: job.system,
        history: job.history,
        question: job.question,
      });
  if (frame.suffixIds.length === 0) throw invalidField('question', 'has no tokens');
  const refs = job.segments
    ? segmentRefs(model.tokenizer, kvFingerprint, job.segments, job.salt)
    : [...job.chunks, ...rawChunkRefs(model.tokenizer, kvFingerprint, job.chunkTexts, job.salt)];
  const { prefixIds, suffixIds } = frame;
  const promptTokens = promptLength(
    prefixIds.length,
    refs.map((r) => r.tokenIds),
    suffixIds.length,
  );
  checkContextFits(promptTokens, job.maxTokens, cfg.maxPositionEmbeddings, {
    prompt: job.chunkTexts ? 'chunks' : job.segments ? 'question' : 'documents',
    maxTokens: 'maxTokens',
  });
  const prefixRef = prefixIds.length ? keyedRef(kvFingerprint, prefixIds, job.salt) : null;
  return { frame, refs, prefixRef };
}

/**
 * The blend options of a job: its fixed ratio, or for `auto` the loading controller's inputs from the cost
 * model — the bytes of one layer of every cache read layer by layer from disk or the store (LRU hits and
 * caches just computed are in memory already).
 */
export function blendOptions(
  ctx: EngineContext,
  job: BlendJobData,
  opened: LoadedChunk[],
): { opts: BlendOptions; autoRatio?: AutoRatio } {
  const { strategy, metric, attention, sinkTokens } = job.selection ?? {};
  const chosen = { selection: strategy, metric, attention, sinkTokens };
  if (job.ratio !== 'auto') return { opts: { mode: job.mode, ratio: job.ratio, ...chosen } };
  const { numKvHeads, headDim } = ctx.engine.config;
  const tokensToLoad = opened
    .filter((c) => c.tier === 'disk' || c.tier === 'store')
    .reduce((a, c) => a + c.tokenIds.length, 0);
  const dtype = ctx.init.kvDtype;
  const estimate = ctx.cost.estimate(kvBytesPerToken(dtype, 1, numKvHeads, headDim) * tokensToLoad);
  const minRatio = ctx.init.blendMinRatio;
  const autoRatio = {
    minRatio,
    layerLoadMs: estimate?.layerLoadMs ?? null,
    tokenLayerMs: estimate?.tokenLayerMs ?? null,
  };
  if (!estimate) return { opts: { mode: job.mode, ratio: minRatio, ...chosen }, autoRatio };
  return { opts: { mode: job.mode, controller: { minRatio, ...estimate }, ...chosen }, autoRatio };
}
