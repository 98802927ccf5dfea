/**
 * Tokenizer over a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`), through @huggingface/tokenizers.
 * `encode` never adds special tokens (callers prepend BOS themselves); `decode` drops special tokens.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer as JsTokenizer } from '@huggingface/tokenizers';
import { ModelLoadError, errorMessage } from '../../errors.js';
import type { Tokenizer } from '../types.js';

export type TokenizerConfigJson = Record<string, unknown>;

export interface HfTokenizerOptions {
  /** BOS id; by default the id of tokenizer_config.json's `bos_token`. */
  bosTokenId?: number;
  /** EOS ids; by default the id of tokenizer_config.json's `eos_token`. */
  eosTokenIds?: number[];
}

/** The text of a special token entry in tokenizer_config.json: a string or an AddedToken object. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return undefined;
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number;
  readonly eosTokenIds: readonly number[];
  readonly chatTemplate?: string;
  readonly specialTokens: { bos?: string; eos?: string };
  private readonly cleanUpSpaces: boolean;
  /** See Tokenizer.maxTokenChars: the longest vocabulary entry (byte-level pieces count bytes, an upper bound). */
  readonly maxTokenChars: number;

  /** Wrap a built @huggingface/tokenizers instance; see fromJson and load for the usual ways in. */
  constructor(
    private readonly tok: JsTokenizer,
    readonly config: TokenizerConfigJson,
    opts: HfTokenizerOptions = {},
  ) {
    let maxId = -1;
    let longest = 1;
    for (const [piece, id] of tok.get_vocab(true)) {
      if (id > maxId) maxId = id;
      if (piece.length > longest) longest = piece.length;
    }
    this.vocabSize = maxId + 1;
    this.maxTokenChars = longest;
    const bos = opts.bosTokenId ?? configTokenId(tok, config, 'bos_token');
    if (bos === undefined) {
      throw new ModelLoadError('tokenizer: no BOS token id (tokenizer_config.json names no bos_token)');
    }
    this.bosTokenId = bos;
    const eos = opts.eosTokenIds ?? [configTokenId(tok, config, 'eos_token')].filter((x) => x !== undefined);
    this.eosTokenIds = Object.freeze([...eos]);
    this.chatTemplate = chatTemplateOf(config);
    this.specialTokens = { bos: tokenContent(config.bos_token), eos: tokenContent(config.eos_token) };
    const cleanUp = config.clean_up_tokenization_spaces;
    this.cleanUpSpaces = typeof cleanUp === 'boolean' ? cleanUp : false;
  }

  /** Build from parsed tokenizer.json and tokenizer_config.json objects. */
  static fromJson(
    tokenizerJson: unknown,
    tokenizerConfig: TokenizerConfigJson = {},
    opts: HfTokenizerOptions = {},
    source = 'tokenizer.json',
  ): HfTokenizer {
    return new HfTokenizer(buildJsTokenizer(tokenizerJson, tokenizerConfig, source), tokenizerConfig, opts);
  }

  /** Load `dir/tokenizer.json` and, if present, `dir/tokenizer_config.json`. */
  static async load(dir: string, opts: HfTokenizerOptions = {}): Promise<HfTokenizer> {
    const { tokenizerJson, config, source } = await readTokenizerFiles(dir);
    return HfTokenizer.fromJson(tokenizerJson, config, opts, source);
  }

  /** Token ids of `text`, without BOS or any other special token the post-processor would add. */
  encode(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /**
   * Text of `ids`, skipping special tokens. Ids without a token (models often pad vocab_size past the
   * tokenizer's vocabulary) decode to nothing.
   */
  decode(ids: readonly number[]): string {
    const known = ids.filter((id) => this.tok.id_to_token(id) !== undefined);
    if (known.length === 0) return '';
    return this.tok.decode(known, {
      skip_special_tokens: true,
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  /** Id of a special token named in tokenizer_config.json (`bos_token`, `eos_token`, ...). */
  specialTokenId(key: string): number | undefined {
    return configTokenId(this.tok, this.config, key);
  }
}

/**
 * tokenizer_config.json's `chat_template`: a Jinja string, or a list of named templates (then the one named
 * `default`, else the first).
 */
function chatTemplateOf(config: TokenizerConfigJson): string | undefined {
  const t = config.chat_template;
  if (typeof t === 'string' && t.trim() !== '') return t;
  if (!Array.isArray(t)) return undefined;
  const named = t.filter(
    (e): e is { name: string; template: string } =>
      !!e && typeof e === 'object' && typeof (e as { template?: unknown }).template === 'string',
  );
  return (named.find((e) => e.name === 'default') ?? named[0])?.template;
}

/** Id of the token that tokenizer_config.json names under `key`, if any and if it is in the vocabulary. */
export function configTokenId(
  tok: JsTokenizer,
  config: TokenizerConfigJson,
  key: string,
): number | undefined {
  const content = tokenContent(config[key]);
  return content === undefined ? undefined : tok.token_to_id(content);
}

export function buildJsTokenizer(
  tokenizerJson: unknown,
  tokenizerConfig: TokenizerConfigJson,
  source = 'tokenizer.json',
): JsTokenizer {
  if (!tokenizerJson || typeof tokenizerJson !== 'object' || Array.isArray(tokenizerJson)) {
    throw new ModelLoadError(`${source}: not a JSON object`);
  }
  try {
    return new JsTokenizer(tokenizerJson, tokenizerConfig);
  } catch (err) {
    throw new ModelLoadError(`${source}: cannot build tokenizer: ${errorMessage(err)}`, { cause: err });
  }
}

/** `dir/tokenizer.json` (required) and `dir/tokenizer_config.json` (optional, `{}` when absent). */
export async function readTokenizerFiles(
  dir: string,
): Promise<{ tokenizerJson: unknown; config: TokenizerConfigJson; source: string }> {
  const source = path.join(dir, 'tokenizer.json');
  const tokenizerJson = await readJson(source, true);
  const config = (await readJson(path.join(dir, 'tokenizer_config.json'), false)) ?? {};
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ModelLoadError(`${path.join(dir, 'tokenizer_config.json')}: not a JSON object`);
  }
  return { tokenizerJson, config: config as TokenizerConfigJson, source };
}

/** Parse a JSON file; a missing optional file gives undefined. Errors are ModelLoadError. */
export async function readJson(file: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ModelLoadError(`cannot read ${file}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModelLoadError(`${file}: not valid JSON: ${errorMessage(err)}`, { cause: err });
  }
}
