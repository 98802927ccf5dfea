/**
 * Prompt templates. Every prompt is `BOS + ids(prefix) + ids(c1) + … + ids(cn) + ids(suffix)`, each part
 * tokenized on its own: the prefix (a system prompt, earlier turns, the start of the user's turn) is cached
 * once at its own positions, the chunks follow, and the suffix wraps the question.
 *
 * `none`: the prefix is the system prompt (and earlier turns) as plain text, the suffix the bare question —
 * without a system prompt exactly the template-free prompt. `chat` renders the model's `chat_template`
 * (tokenizer_config.json) with @huggingface/jinja around two markers — one where the chunks go (at the start
 * of the last user turn), one for the question after them — and splits the text at the markers, so an
 * instruct model sees its own format with the chunks inside the user turn. `auto` is `chat` when the model
 * has a chat template, else `none`. A Jinja source can be given instead (the CLI's `--template <file>`).
 */
import { Template } from '@huggingface/jinja';
import { errorMessage, invalidField } from '../errors.js';
import type { Tokenizer } from './types.js';

export type TemplateName = 'auto' | 'none' | 'chat';
export const TEMPLATE_NAMES: readonly TemplateName[] = ['auto', 'none', 'chat'];
export type TemplateChoice = TemplateName | { jinja: string };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** What a prompt is made of, before tokenizing: everything but the chunks. */
export interface PromptSpec {
  /** Default `auto`. */
  template?: TemplateChoice;
  system?: string;
  /** Turns before the question (an OpenAI chat request's earlier messages), oldest first. */
  history?: ChatMessage[];
  question: string;
  /**
   * The question continues the text before it directly (a prompt split at the chunks found in it): no
   * blank line is put between the chunks and the question.
   */
  joined?: boolean;
}

export interface PromptFrame {
  /** The template actually applied. */
  template: 'none' | 'chat' | 'jinja';
  prefix: string;
  suffix: string;
}

export interface FrameIds {
  template: PromptFrame['template'];
  prefixIds: number[];
  suffixIds: number[];
}

// Private-use characters: no real text holds them, and templates pass them through untouched.
const CONTEXT_MARK = '\uE000cacheblend-context\uE000';
const QUESTION_MARK = '\uE001cacheblend-question\uE001';

/** The prefix and suffix texts a spec gives for this tokenizer. InvalidArgumentError names the field. */
export function renderFrame(tok: Tokenizer, spec: PromptSpec): PromptFrame {
  const choice = spec.template ?? 'auto';
  const source =
    typeof choice === 'object'
      ? choice.jinja
      : choice === 'none' || (choice === 'auto' && !tok.chatTemplate)
        ? null
        : tok.chatTemplate;
  if (source === null) return plainFrame(spec);
  if (source === undefined) {
    throw invalidField('template', "the model has no chat_template (use 'none')");
  }
  return { template: typeof choice === 'object' ? 'jinja' : 'chat', ...splitRendered(tok, source, spec) };
}

/** The frame tokenized: each part on its own, without BOS (callers reject an empty suffix). */
export function frameIds(tok: Tokenizer, spec: PromptSpec): FrameIds {
  const frame = renderFrame(tok, spec);
  const suffixIds = frame.suffix ? tok.encode(frame.suffix) : [];
  return { template: frame.template, prefixIds: frame.prefix ? tok.encode(frame.prefix) : [], suffixIds };
}

function plainFrame(spec: PromptSpec): PromptFrame {
  const earlier = [spec.system ?? '', ...(spec.history ?? []).map((m) => m.content)].filter((t) => t !== '');
  return { template: 'none', prefix: earlier.join('\n\n'), suffix: spec.question };
}

function splitRendered(tok: Tokenizer, source: string, spec: PromptSpec): { prefix: string; suffix: string } {
  const messages: ChatMessage[] = [
    ...(spec.system !== undefined && spec.system !== ''
      ? [{ role: 'system' as const, content: spec.system }]
      : []),
    ...(spec.history ?? []),
    { role: 'user', content: `${CONTEXT_MARK}${QUESTION_MARK}` },
  ];
  let text: string;
  try {
    text = new Template(source).render({
      messages,
      add_generation_prompt: true,
      bos_token: tok.specialTokens?.bos ?? '',
      eos_token: tok.specialTokens?.eos ?? '',
    });
  } catch (err) {
    throw invalidField('template', `the chat template failed to render: ${errorMessage(err)}`);
  }
  const at = text.indexOf(CONTEXT_MARK);
  const q = text.indexOf(QUESTION_MARK);
  if (
    at < 0 ||
    q < at ||
    text.indexOf(CONTEXT_MARK, at + 1) >= 0 ||
    text.indexOf(QUESTION_MARK, q + 1) >= 0
  ) {
    throw invalidField('template', "the chat template does not render the user's message once");
  }
  let prefix = text.slice(0, at);
  // BOS is always prepended as an id; a template that writes it as text would double it.
  const bos = tok.specialTokens?.bos;
  if (bos && prefix.startsWith(bos)) prefix = prefix.slice(bos.length);
  const between = text.slice(at + CONTEXT_MARK.length, q);
  const suffix = `${between}${spec.joined ? '' : '\n\n'}${spec.question}${text.slice(q + QUESTION_MARK.length)}`;
  return { prefix, suffix };
}
