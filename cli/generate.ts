/**
 * `cacheblend generate`: the engine directly, no services. Plain generation (`--prompt`), or chunks and a
 * question in any blend mode; chunk caches are round-tripped through the stored format exactly as the
 * service stores them, and the context-length rule is the service's, so the answer is the service's.
 */
import {
  BLEND_MODES,
  DEVIATION_METRICS,
  tokenIdsOnly,
  type BlendMode,
  type BlendOptions,
  type BlendPrefill,
  type ChunkKvSource,
} from '../core/blend/index.js';
import type { Config, ExecutionProvider, KvDtype } from '../core/config/index.js';
import { InvalidArgumentError } from '../core/errors.js';
import {
  answerText,
  blendAndDecode,
  checkContextFits,
  promptIds,
  storedChunk,
} from '../core/inference/pipeline.js';
import { Engine } from '../core/model/engine.js';
import type { SamplingOptions } from '../core/model/generate.js';
import { loadModel } from '../core/model/load.js';
import { roundMs } from '../core/util/time.js';
import { choiceFlag, numberFlag, parseFlags } from './args.js';

export const GENERATE_USAGE = `usage: cacheblend generate [--model <path|name>] (--prompt <text> | --chunk <text>... --question <text>)
         [--mode full|prefix|reuse|blend] [--ratio R] [--check-layer N] [--metric k|v|kv]
         [--gradual R1,R2,...] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
         [--ep cpu|webgpu|cuda] [--kv-dtype float16|float32] [--json] [--logits]

  --model       a model folder, or a name looked up like the service does (default: MODEL)
  --prompt      plain generation: BOS + the tokenized text, prefilled in full
  --chunk       a context chunk (repeatable), tokenized on its own; its KV cache is precomputed alone
  --question    the question that follows the chunks
  --mode        how the chunks' caches are used (default blend)
  --ratio       fraction of context tokens blend recomputes (default 0.15)
  --check-layer layer where blend measures deviations (default 1)
  --metric      deviation measure: k, v or kv (default k)
  --gradual     gradual filtering: one ratio per layer from the check layer on, not growing
  --max-tokens  tokens to generate (default 32)
  --temperature 0 is greedy (default); --top-k, --top-p and --seed shape sampling
  --ep          execution provider (default: EXECUTION_PROVIDER)
  --kv-dtype    precision chunk caches are stored in, as the service stores them (default: KV_DTYPE)
  --json        print one JSON object instead of the text
  --logits      with --json: include firstTokenLogits
  --help        this text`;

const FLAGS = {
  model: { type: 'string' },
  prompt: { type: 'string' },
  chunk: { type: 'string', multiple: true },
  question: { type: 'string' },
  mode: { type: 'string' },
  ratio: { type: 'string' },
  'check-layer': { type: 'string' },
  metric: { type: 'string' },
  gradual: { type: 'string' },
  'max-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  seed: { type: 'string' },
  ep: { type: 'string' },
  'kv-dtype': { type: 'string' },
  json: { type: 'boolean' },
  logits: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface GenerateRequest {
  model: string;
  /** Plain generation: the prompt is the "question", with no chunks. */
  plain: boolean;
  chunks: string[];
  question: string;
  blend: BlendOptions;
  sampling: SamplingOptions;
  ep: ExecutionProvider;
  kvDtype: KvDtype;
  json: boolean;
  logits: boolean;
}

/** The request a command line asks for, or null for --help; InvalidArgumentError names a bad flag. */
export function parseGenerateArgs(argv: string[], config: Config): GenerateRequest | null {
  const { values } = parseFlags(argv, FLAGS);
  if (values.help) return null;
  const chunks = values.chunk ?? [];
  const plain = values.prompt !== undefined;
  if (plain && (chunks.length > 0 || values.question !== undefined)) {
    throw new InvalidArgumentError('use either --prompt, or --chunk/--question, not both');
  }
  if (!plain && values.question === undefined) {
    throw new InvalidArgumentError(
      'give --prompt <text>, or --question <text> with any number of --chunk <text>',
    );
  }
  const mode = choiceFlag<BlendMode>(values.mode, 'mode', BLEND_MODES, plain ? 'full' : 'blend');
  if (plain && mode !== 'full') {
    throw new InvalidArgumentError('--prompt runs in full mode; use --chunk/--question for other modes');
  }
  return {
    model: values.model ?? config.model,
    plain,
    chunks,
    question: plain ? values.prompt! : values.question!,
    blend: {
      mode,
      ratio: numberFlag(values.ratio, 'ratio', { min: 0, max: 1 }),
      checkLayer: numberFlag(values['check-layer'], 'check-layer', { integer: true, min: 0 }),
      metric: choiceFlag(values.metric, 'metric', DEVIATION_METRICS, 'k'),
      gradualRatios: values.gradual?.split(',').map((r) => numberFlag(r, 'gradual', { min: 0, max: 1 })!),
    },
    sampling: {
      maxTokens: numberFlag(values['max-tokens'], 'max-tokens', { integer: true, min: 0 }) ?? 32,
      temperature: numberFlag(values.temperature, 'temperature', { min: 0 }) ?? 0,
      topK: numberFlag(values['top-k'], 'top-k', { integer: true, min: 1 }),
      topP: numberFlag(values['top-p'], 'top-p', { min: 0, max: 1 }),
      seed: numberFlag(values.seed, 'seed', { integer: true, min: 0, max: 2 ** 32 - 1 }) ?? 0,
    },
    ep: choiceFlag<ExecutionProvider>(values.ep, 'ep', ['cpu', 'webgpu', 'cuda'], config.executionProvider),
    kvDtype: choiceFlag<KvDtype>(values['kv-dtype'], 'kv-dtype', ['float16', 'float32'], config.kvDtype),
    json: values.json ?? false,
    logits: values.logits ?? false,
  };
}

export async function generateCommand(
  argv: string[],
  out: (s: string) => void,
  config: Config,
): Promise<void> {
  const req = parseGenerateArgs(argv, config);
  if (!req) {
    out(`${GENERATE_USAGE}\n`);
    return;
  }
  const model = await loadModel(req.model, config.modelSource);
  const engine = await Engine.create(model, { executionProvider: req.ep });
  try {
    const answer = await generate(engine, req);
    out(req.json ? `${JSON.stringify(jsonResult(req, answer))}\n` : `${answer.text}\n`);
  } finally {
    await engine.dispose();
  }
}

interface GenerateAnswer {
  prefill: BlendPrefill;
  tokens: number[];
  text: string;
  totalMs: number;
}

async function generate(engine: Engine, req: GenerateRequest): Promise<GenerateAnswer> {
  const tok = engine.model.tokenizer;
  const chunkIds = req.chunks.map((c, i) => {
    const ids = tok.encode(c);
    if (ids.length === 0) throw new InvalidArgumentError(`--chunk ${i + 1} is empty`);
    return ids;
  });
  const questionIds = tok.encode(req.question);
  if (questionIds.length === 0)
    throw new InvalidArgumentError(`${req.plain ? '--prompt' : '--question'} is empty`);
  const promptTokens = 1 + chunkIds.reduce((a, ids) => a + ids.length, 0) + questionIds.length;
  checkContextFits(promptTokens, req.sampling.maxTokens, engine.config.maxPositionEmbeddings, {
    prompt: req.plain ? '--prompt' : '--chunk/--question',
    maxTokens: '--max-tokens',
  });
  // Caches are precomputed (offline in the service) before the clock starts: TTFT is the query's cost.
  const sources: ChunkKvSource[] =
    req.blend.mode === 'full'
      ? chunkIds.map(tokenIdsOnly)
      : await Promise.all(chunkIds.map((ids) => storedChunk(engine, ids, req.kvDtype)));
  const { prefill, tokens, totalMs } = await blendAndDecode(
    engine,
    sources,
    questionIds,
    req.blend,
    req.sampling,
  );
  const text = answerText(tok, promptIds(engine.config.bosTokenId, sources, questionIds), tokens);
  return { prefill, tokens, text, totalMs };
}

function jsonResult(req: GenerateRequest, { prefill, tokens, text, totalMs }: GenerateAnswer) {
  return {
    mode: req.blend.mode,
    promptTokens: prefill.promptTokens,
    contextTokens: prefill.contextTokens,
    recomputedTokens: prefill.recomputedTokens,
    ...(req.blend.mode === 'blend' && { ratio: prefill.ratio }),
    generatedTokens: tokens,
    text,
    ttftMs: roundMs(prefill.timings.ttftMs),
    totalMs: roundMs(totalMs),
    ...(req.logits && { firstTokenLogits: Array.from(prefill.firstTokenLogits) }),
  };
}
