/**
 * A request's prompt, planned once: the template's frame around the question, and every chunk the context
 * holds (stored chunks, raw chunk texts, a matched prompt's segments) as token ids with the key its cache
 * is stored under. The API plans it (on its text thread) and puts it on the blend job; the CLI plans it the
 * same way; the blend worker only validates it (`checkPlannedPrompt`). The prompt it makes is laid out by
 * core/blend/steps.ts `layoutPrompt`: BOS, the prefix, the chunks, the suffix.
 */
import { InvalidArgumentError, KvMismatchError } from '../errors.js';
import { chunkKey } from '../kv/format.js';
import { frameIds, type PromptSpec } from '../model/template.js';
import type { Tokenizer } from '../model/types.js';
import type { BlendChunkRef, PromptSegment } from '../queue/contracts.js';
import { checkContextFits } from './context-fit.js';

export interface PlannedPrompt {
  /** The template the frame was rendered with (`auto` resolved). */
  template: 'none' | 'chat' | 'jinja';
  /** The template's text before the context (a system prompt, earlier turns), cached like a chunk. */
  prefix: BlendChunkRef | null;
  /** The context, in prompt order. */
  chunks: BlendChunkRef[];
  /** The question, wrapped by the template's end. */
  suffixIds: number[];
  /** The request field a caller shortens when the prompt is too long for the context. */
  promptField: string;
}

/** Token ids as a chunk reference, keyed like any stored chunk of this model (with the tenant's salt). */
export function keyedRef(fingerprint: string, tokenIds: number[], salt = ''): BlendChunkRef {
  return { key: chunkKey(fingerprint, tokenIds, salt), tokenIds };
}

/** The frame of a prompt: the template rendered around the question; no context yet. */
export function planFrame(
  tok: Tokenizer,
  fingerprint: string,
  spec: PromptSpec,
  salt = '',
  questionField = 'question',
): PlannedPrompt {
  const { template, prefixIds, suffixIds } = frameIds(tok, spec);
  if (suffixIds.length === 0) throw new InvalidArgumentError(`${questionField}: has no tokens`);
  const prefix = prefixIds.length ? keyedRef(fingerprint, prefixIds, salt) : null;
  return { template, prefix, chunks: [], suffixIds, promptField: questionField };
}

/**
 * Raw chunk texts as chunk references: each tokenized on its own and keyed like a stored chunk. `field`
 * names the i-th chunk in an error (`chunks.0`, `--chunk 1`).
 */
export function planChunkTexts(
  tok: Tokenizer,
  fingerprint: string,
  texts: readonly string[],
  salt = '',
  field: (i: number) => string = (i) => `chunks.${i}`,
): BlendChunkRef[] {
  return texts.map((text, i) => {
    const tokenIds = tok.encode(text);
    if (tokenIds.length === 0) throw new InvalidArgumentError(`${field(i)}: has no tokens`);
    return keyedRef(fingerprint, tokenIds, salt);
  });
}

/**
 * A matched prompt (core/retrieval/match-prompt.ts): its segments hold the rendered template already, so
 * stored chunks stay as they are, the text between them is tokenized on its own and keyed like a raw chunk
 * (text that encodes to no token is left out), and the question's remaining text ends it.
 */
export function planMatched(
  tok: Tokenizer,
  fingerprint: string,
  m: { template: 'none' | 'chat'; segments: readonly PromptSegment[]; question: string },
  salt = '',
  questionField = 'question',
): PlannedPrompt {
  const chunks = m.segments.flatMap((s) => {
    if (!('text' in s)) return [s];
    const tokenIds = tok.encode(s.text);
    return tokenIds.length ? [keyedRef(fingerprint, tokenIds, salt)] : [];
  });
  const suffixIds = tok.encode(m.question);
  if (suffixIds.length === 0) throw new InvalidArgumentError(`${questionField}: has no tokens`);
  return { template: m.template, prefix: null, chunks, suffixIds, promptField: questionField };
}

/** Tokens of the prompt: BOS, the prefix, the chunks, the suffix. */
export function plannedTokens(p: Pick<PlannedPrompt, 'prefix' | 'chunks' | 'suffixIds'>): number {
  const chunks = p.chunks.reduce((a, c) => a + c.tokenIds.length, 0);
  return 1 + (p.prefix?.tokenIds.length ?? 0) + chunks + p.suffixIds.length;
}

/**
 * What the blend worker checks of a prompt planned elsewhere: made for this model, token ids the model
 * has, a question, and room for the answer in the context.
 */
export function checkPlannedPrompt(
  p: PlannedPrompt,
  o: {
    jobFingerprint: string;
    fingerprint: string;
    vocabSize: number;
    contextLength: number;
    maxTokens: number;
  },
): void {
  if (o.jobFingerprint !== o.fingerprint) {
    throw new KvMismatchError(
      `the job was made for model ${o.jobFingerprint.slice(0, 12)}, this worker runs ${o.fingerprint.slice(0, 12)}`,
    );
  }
  if (p.suffixIds.length === 0) throw new InvalidArgumentError(`${p.promptField}: has no tokens`);
  const refs = p.prefix ? [p.prefix, ...p.chunks] : p.chunks;
  const ok = (id: number) => Number.isInteger(id) && id >= 0 && id < o.vocabSize;
  if (!p.suffixIds.every(ok) || !refs.every((r) => r.tokenIds.length > 0 && r.tokenIds.every(ok))) {
    throw new InvalidArgumentError(`${p.promptField}: the planned prompt holds token ids this model lacks`);
  }
  checkContextFits(plannedTokens(p), o.maxTokens, o.contextLength, {
    prompt: p.promptField,
    maxTokens: 'maxTokens',
  });
}
