/**
 * `cacheblend generate`: the engine directly, no services. Plain generation (`--prompt`), or chunks and a
 * question in any blend mode; chunk caches are round-tripped through the stored format exactly as the
 * service stores them, and the context-length rule is the service's, so the answer is the service's.
 */
import {
  ATTENTION_SOURCES,
  BLEND_MODES,
  DEFAULT_SELECTION,
  DEVIATION_METRICS,
  MAX_SINK_TOKENS,
  SELECTION_STRATEGIES,
  tokenIdsOnly,
  type BlendMode,
  type BlendOptions,
  type ChunkKvSource,
} from '../core/blend/index.js';
import type { Config, ExecutionProvider, KvDtype } from '../core/config/index.js';
import { InvalidArgumentError } from '../core/errors.js';
import { readFileSync } from 'node:fs';
import {
  blendAndDecode,
  checkContextFits,
  promptLength,
  storedChunk,
  type BlendAnswer,
  type DecodeOptions,
} from '../core/inference/pipeline.js';
import { Engine } from '../core/model/engine.js';
import { loadModel } from '../core/model/load.js';
import { TEMPLATE_NAMES, frameIds, type TemplateChoice, type TemplateName } from '../core/model/template.js';
import { roundMs } from '../core/util/time.js';
import { choiceFlag, numberFlag, parseFlags } from './args.js';
import { selectProcessGpu } from '../core/runtime/gpus.js';
import { resolveWeightFormat, WEIGHT_FORMATS, type WeightSetting } from '../core/model/weights/format.js';

export const GENERATE_USAGE = `usage: cacheblend generate [--model <path|name>] (--prompt <text> | --chunk <text>... --question <text>)
         [--system <text>] [--template auto|none|chat|<file>] [--mode full|prefix|reuse|blend] [--ratio R]
         [--check-layer N] [--metric k|v|kv] [--selection deviation|question|combined]
         [--attention check|lookahead] [--sink-tokens N]
         [--gradual R1,R2,...] [--max-tokens N] [--temperature T]
         [--top-k K] [--top-p P] [--stop <text>]... [--seed S] [--ep cpu|webgpu|cuda]
         [--weights auto|fp32|fp16|q4] [--kv-dtype float16|float32] [--json] [--logits]

  --model       a model folder, or a name looked up like the service does (default: MODEL)
  --prompt      plain generation: BOS + the tokenized text, prefilled in full
  --chunk       a context chunk (repeatable), tokenized on its own; its KV cache is precomputed alone
  --question    the question that follows the chunks
  --system      a system prompt: part of the template's prefix, cached once at its own positions
  --template    how the prompt is framed: auto (the model's chat template if it has one, else none),
                none (system prompt, chunks, bare question), chat, or a Jinja chat-template file
  --stop        stop when the answer holds this text (repeatable); the answer ends before it
  --mode        how the chunks' caches are used (default blend)
  --ratio       fraction of context tokens blend recomputes (default 0.15)
  --check-layer layer where blend measures deviations (default 1)
  --metric      deviation measure: k, v or kv (default k)
  --selection   how blend picks the tokens it recomputes: deviation (CacheBlend's), question (the
                question's attention to the context at the check layer), combined (half each)
                (default ${DEFAULT_SELECTION}, deviation on a device-resident GPU engine: question
                and combined run on the host path only)
  --attention   where question and combined measure the question's attention: check (the check
                layer, default) or lookahead (the question alone through the reused cache, every layer)
  --sink-tokens always recompute the first N tokens of every chunk, within the ratio's budget (default 0)
  --gradual     gradual filtering: one ratio per layer from the check layer on, not growing
  --max-tokens  tokens to generate (default 32)
  --temperature 0 is greedy (default); --top-k, --top-p and --seed shape sampling
  --ep          execution provider (default: EXECUTION_PROVIDER)
  --weights     linear layers' weights: fp32, fp16 or q4 (4-bit); auto: fp32 on the CPU, the device
                precision's on a GPU (default: WEIGHTS)
  --kv-dtype    precision chunk caches are stored in, as the service stores them (default: KV_DTYPE)
  --json        print one JSON object instead of the text
  --logits      with --json: include firstTokenLogits
  --help        this text`;

const FLAGS = {
  model: { type: 'string' },
  prompt: { type: 'string' },
  chunk: { type: 'string', multiple: true },
  question: { type: 'string' },
  system: { type: 'string' },
  template: { type: 'string' },
  stop: { type: 'string', multiple: true },
  mode: { type: 'string' },
  ratio: { type: 'string' },
  'check-layer': { type: 'string' },
  metric: { type: 'string' },
  selection: { type: 'string' },
  attention: { type: 'string' },
  'sink-tokens': { type: 'string' },
  gradual: { type: 'string' },
  'max-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  seed: { type: 'string' },
  ep: { type: 'string' },
  weights: { type: 'string' },
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
  system?: string;
  template: TemplateChoice;
  blend: BlendOptions;
  sampling: DecodeOptions;
  ep: ExecutionProvider;
  weights: WeightSetting;
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
  if (plain && (values.system !== undefined || values.template !== undefined)) {
    throw new InvalidArgumentError('--prompt is used as given; --system and --template go with --question');
  }
  return {
    model: values.model ?? config.model,
    plain,
    chunks,
    question: plain ? values.prompt! : values.question!,
    system: values.system,
    template: plain ? 'none' : templateFlag(values.template),
    blend: {
      mode,
      ratio: numberFlag(values.ratio, 'ratio', { min: 0, max: 1 }),
      checkLayer: numberFlag(values['check-layer'], 'check-layer', { integer: true, min: 0 }),
      metric: choiceFlag(values.metric, 'metric', DEVIATION_METRICS, 'k'),
      // Absent, blend picks its default (deviation on a device-resident engine).
      selection:
        values.selection === undefined
          ? undefined
          : choiceFlag(values.selection, 'selection', SELECTION_STRATEGIES, DEFAULT_SELECTION),
      attention:
        values.attention === undefined
          ? undefined
          : choiceFlag(values.attention, 'attention', ATTENTION_SOURCES, 'check'),
      sinkTokens: numberFlag(values['sink-tokens'], 'sink-tokens', {
        integer: true,
        min: 0,
        max: MAX_SINK_TOKENS,
      }),
      gradualRatios: values.gradual?.split(',').map((r) => numberFlag(r, 'gradual', { min: 0, max: 1 })!),
    },
    sampling: {
      maxTokens: numberFlag(values['max-tokens'], 'max-tokens', { integer: true, min: 0 }) ?? 32,
      temperature: numberFlag(values.temperature, 'temperature', { min: 0 }) ?? 0,
      topK: numberFlag(values['top-k'], 'top-k', { integer: true, min: 1 }),
      topP: numberFlag(values['top-p'], 'top-p', { min: 0, max: 1 }),
      seed: numberFlag(values.seed, 'seed', { integer: true, min: 0, max: 2 ** 32 - 1 }) ?? 0,
      stop: values.stop,
    },
    ep: choiceFlag<ExecutionProvider>(values.ep, 'ep', ['cpu', 'webgpu', 'cuda'], config.executionProvider),
    weights: choiceFlag<WeightSetting>(
      values.weights,
      'weights',
      ['auto', ...WEIGHT_FORMATS],
      config.weights,
    ),
    kvDtype: choiceFlag<KvDtype>(values['kv-dtype'], 'kv-dtype', ['float16', 'float32'], config.kvDtype),
    json: values.json ?? false,
    logits: values.logits ?? false,
  };
}

/** --template: a template name, or a file holding a Jinja chat template. */
function templateFlag(raw: string | undefined): TemplateChoice {
  if (raw === undefined) return 'auto';
  if ((TEMPLATE_NAMES as readonly string[]).includes(raw)) return raw as TemplateName;
  try {
    return { jinja: readFileSync(raw, 'utf8') };
  } catch {
    throw new InvalidArgumentError(
      `--template must be one of ${TEMPLATE_NAMES.join(', ')} or a readable file, got "${raw}"`,
    );
  }
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
  selectProcessGpu(req.ep, config.gpuIndex);
  const engine = await Engine.create(model, {
    executionProvider: req.ep,
    ...(req.ep === 'cuda' && config.gpuIndex !== null
      ? { sessionOptions: { executionProviders: [{ name: 'cuda', deviceId: config.gpuIndex }] } }
      : {}),
    deviceDtype: config.deviceDtype,
    weights: resolveWeightFormat(req.weights, req.ep, config.deviceDtype),
  });
  try {
    const answer = await generate(engine, req);
    out(req.json ? `${JSON.stringify(jsonResult(req, answer))}\n` : `${answer.text}\n`);
  } finally {
    await engine.dispose();
  }
}

async function generate(engine: Engine, req: GenerateRequest): Promise<BlendAnswer> {
  const tok = engine.model.tokenizer;
  const chunkIds = req.chunks.map((c, i) => {
    const ids = tok.encode(c);
    if (ids.length === 0) throw new InvalidArgumentError(`--chunk ${i + 1} is empty`);
    return ids;
  });
  const frame = frameIds(tok, { template: req.template, system: req.system, question: req.question });
  if (frame.suffixIds.length === 0)
    throw new InvalidArgumentError(`${req.plain ? '--prompt' : '--question'} is empty`);
  const promptTokens = promptLength(frame.prefixIds.length, chunkIds, frame.suffixIds.length);
  checkContextFits(promptTokens, req.sampling.maxTokens, engine.config.maxPositionEmbeddings, {
    prompt: req.plain ? '--prompt' : '--chunk/--question',
    maxTokens: '--max-tokens',
  });
  // Caches are precomputed (offline in the service) before the clock starts: TTFT is the query's cost.
  const cached = (ids: number[]): Promise<ChunkKvSource> =>
    req.blend.mode === 'full' ? Promise.resolve(tokenIdsOnly(ids)) : storedChunk(engine, ids, req.kvDtype);
  const prefix = frame.prefixIds.length ? await cached(frame.prefixIds) : null;
  const chunks = await Promise.all(chunkIds.map(cached));
  return blendAndDecode(engine, { prefix, chunks, suffixIds: frame.suffixIds }, req.blend, req.sampling);
}

function jsonResult(req: GenerateRequest, { prefill, tokens, text, totalMs, finishReason }: BlendAnswer) {
  return {
    mode: req.blend.mode,
    promptTokens: prefill.promptTokens,
    prefixTokens: prefill.prefixTokens,
    contextTokens: prefill.contextTokens,
    recomputedTokens: prefill.recomputedTokens,
    ...(req.blend.mode === 'blend' && { ratio: prefill.ratio }),
    generatedTokens: tokens,
    text,
    finishReason,
    ttftMs: roundMs(prefill.timings.ttftMs),
    totalMs: roundMs(totalMs),
    ...(req.logits && { firstTokenLogits: Array.from(prefill.firstTokenLogits) }),
  };
}
