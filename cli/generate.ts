/**
 * `cacheblend generate`: the engine directly, no services. Plain generation (`--prompt`), or chunks and a
 * question in any blend mode; chunk caches are round-tripped through the stored format exactly as the
 * service stores them, and the context-length rule is the service's, so the answer is the service's.
 */
import {
  ATTENTION_SOURCES,
  BLEND_MODES,
  DEFAULT_ATTENTION,
  DEFAULT_CHECK_LAYER,
  DEFAULT_SELECTION,
  DEVIATION_METRICS,
  MAX_SINK_TOKENS,
  SELECTION_STRATEGIES,
  tokenIdsOnly,
  type AttentionSource,
  type BlendMode,
  type DeviationMetric,
  type SelectionStrategy,
  type BlendOptions,
  type ChunkKvSource,
} from '../core/blend/index.js';
import type { Config, ExecutionProvider, KvDtype } from '../core/config/index.js';
import { KV_DTYPES } from '../core/kv/format.js';
import { InvalidArgumentError } from '../core/errors.js';
import { readFileSync } from 'node:fs';
import { blendAndDecode, type BlendAnswer, type DecodeOptions } from '../core/inference/answer.js';
import { storedChunk } from '../core/inference/chunk-objects.js';
import { checkContextFits } from '../core/inference/context-fit.js';
import { planChunkTexts, planFrame, plannedTokens } from '../core/inference/prompt-plan.js';
import { Engine } from '../core/model/engine.js';
import { loadModel } from '../core/model/load.js';
import { TEMPLATE_NAMES, type TemplateChoice, type TemplateName } from '../core/model/template.js';
import { roundMs } from '../core/util/time.js';
import { numberFlag, withEngineOptions } from './args.js';
import { Option, type Command } from 'commander';
import { selectProcessGpu } from '../core/runtime/gpus.js';
import { resolveWeightFormat, type WeightSetting } from '../core/model/weights/format.js';

/** How the chunks' caches are used: mode, ratio and the selection of the tokens blend recomputes. */
function defineBlendFlags(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--mode <mode>',
        "how the chunks' caches are used (default: blend; full with --prompt)",
      ).choices(BLEND_MODES),
    )
    .option(
      '--ratio <r|auto>',
      'fraction of context tokens blend recomputes, or auto: the loading controller, which recomputes r_min (BLEND_MIN_RATIO) when, as here, every cache is in memory',
      '0.15',
    )
    .option(
      '--check-layer <n>',
      `layer where blend measures deviations (default ${DEFAULT_CHECK_LAYER}, or the model's last)`,
    )
    .addOption(new Option('--metric <metric>', 'deviation measure').choices(DEVIATION_METRICS).default('k'))
    .addOption(
      new Option(
        '--selection <strategy>',
        `how blend picks the tokens it recomputes: deviation (CacheBlend's), question (the question's attention to the context), combined (half by attention, half by deviation), fused (rank fusion of both attentions and deviation); default ${DEFAULT_SELECTION} on every engine`,
      ).choices(SELECTION_STRATEGIES),
    )
    .addOption(
      new Option(
        '--attention <source>',
        `where question and combined measure the question's attention: check (the check layer) or lookahead (the question alone through the layers from the check layer on); default ${DEFAULT_ATTENTION}`,
      ).choices(ATTENTION_SOURCES),
    )
    .option(
      '--sink-tokens <n>',
      "always recompute the first N tokens of every chunk, within the ratio's budget",
      '0',
    )
    .option(
      '--gradual <r1,r2,...>',
      'gradual filtering: one ratio per layer from the check layer on, not growing',
    );
}

/** The generate command's flags, with their help: commander parses them (cli/main.ts). */
export function defineGenerateFlags(cmd: Command): Command {
  return defineBlendFlags(withEngineOptions(cmd))
    .option('--prompt <text>', 'plain generation: BOS + the tokenized text, prefilled in full')
    .option(
      '--chunk <text>',
      'a context chunk (repeatable), tokenized on its own; its KV cache is precomputed alone',
      collect,
    )
    .option('--question <text>', 'the question that follows the chunks')
    .option(
      '--system <text>',
      "a system prompt: part of the template's prefix, cached once at its own positions",
    )
    .option(
      '--template <name|file>',
      "how the prompt is framed: auto (the model's chat template if it has one, else none), none, chat, or a Jinja chat-template file",
      'auto',
    )
    .option(
      '--stop <text>',
      'stop when the answer holds this text (repeatable); the answer ends before it',
      collect,
    )
    .option('--max-tokens <n>', 'tokens to generate', '32')
    .option('--temperature <t>', '0 is greedy; --top-k, --top-p and --seed shape sampling', '0')
    .option('--top-k <k>', "sampling's top-k")
    .option('--top-p <p>', 'nucleus sampling, (0, 1]')
    .option('--seed <s>', 'seed of the sampler', '0')
    .addOption(
      new Option(
        '--kv-dtype <dtype>',
        'precision chunk caches are stored in, as the service stores them (default: KV_DTYPE)',
      ).choices(KV_DTYPES),
    )
    .option('--json', 'print one JSON object instead of the text')
    .option('--logits', 'with --json: include firstTokenLogits');
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** What commander hands over: every value as typed (numbers are checked here, with the flag's name). */
export interface GenerateFlags {
  model?: string;
  prompt?: string;
  chunk?: string[];
  question?: string;
  system?: string;
  template: string;
  stop?: string[];
  mode?: BlendMode;
  ratio: string;
  checkLayer?: string;
  metric: DeviationMetric;
  selection?: SelectionStrategy;
  attention?: AttentionSource;
  sinkTokens: string;
  gradual?: string;
  maxTokens: string;
  temperature: string;
  topK?: string;
  topP?: string;
  seed: string;
  ep?: ExecutionProvider;
  weights?: WeightSetting;
  kvDtype?: KvDtype;
  json?: boolean;
  logits?: boolean;
}

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

/** Flags that shape blend's recomputation: they apply to `--mode blend` only. */
const BLEND_ONLY_FLAGS = [
  '--ratio',
  '--check-layer',
  '--metric',
  '--selection',
  '--attention',
  '--sink-tokens',
  '--gradual',
];

/**
 * Flags typed on the command line that do nothing in the chosen mode are refused, naming them, rather than
 * ignored: blend's settings outside blend, `--kv-dtype` where no cache is stored (full), `--logits`
 * without `--json`. `given` holds the flags typed (as `--name`); defaults never count.
 */
function refuseInapplicableFlags(mode: BlendMode, given: ReadonlySet<string>, values: GenerateFlags): void {
  const list = (flags: string[]) => flags.join(', ');
  const blendOnly = BLEND_ONLY_FLAGS.filter((f) => given.has(f));
  if (mode !== 'blend' && blendOnly.length > 0) {
    throw new InvalidArgumentError(
      `${list(blendOnly)} ${blendOnly.length === 1 ? 'applies' : 'apply'} to --mode blend only (the mode here is ${mode}); drop ${blendOnly.length === 1 ? 'it' : 'them'} or use --mode blend`,
    );
  }
  if (mode === 'full' && given.has('--kv-dtype')) {
    throw new InvalidArgumentError(
      '--kv-dtype applies to modes that read stored chunk caches (prefix, reuse, blend); --mode full stores none',
    );
  }
  if (values.logits && !values.json) {
    throw new InvalidArgumentError('--logits adds firstTokenLogits to the JSON output: use it with --json');
  }
}

/**
 * The request the flags ask for; InvalidArgumentError names a bad flag. `given`: the flags typed on the
 * command line (`--name`), so that flags that do not apply to the mode are refused (defaults never are).
 */
export function parseGenerateArgs(
  values: GenerateFlags,
  config: Config,
  given: ReadonlySet<string> = new Set(),
): GenerateRequest {
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
  const mode = values.mode ?? (plain ? 'full' : 'blend');
  if (plain && mode !== 'full') {
    throw new InvalidArgumentError('--prompt runs in full mode; use --chunk/--question for other modes');
  }
  if (plain && (values.system !== undefined || values.template !== 'auto')) {
    throw new InvalidArgumentError('--prompt is used as given; --system and --template go with --question');
  }
  refuseInapplicableFlags(mode, given, values);
  return {
    model: values.model ?? config.model,
    plain,
    chunks,
    question: plain ? values.prompt! : values.question!,
    system: values.system,
    template: plain ? 'none' : templateFlag(values.template),
    blend: {
      mode,
      // auto: the service's loading controller with nothing to load (the caches are in memory) picks r_min.
      ratio:
        values.ratio === 'auto'
          ? config.blendMinRatio
          : numberFlag(values.ratio, 'ratio', { min: 0, max: 1 }),
      checkLayer: numberFlag(values.checkLayer, 'check-layer', { integer: true, min: 0 }),
      metric: values.metric,
      // Absent, blend picks its default (the same on every engine).
      selection: values.selection,
      attention: values.attention,
      sinkTokens: numberFlag(values.sinkTokens, 'sink-tokens', {
        integer: true,
        min: 0,
        max: MAX_SINK_TOKENS,
      }),
      gradualRatios: values.gradual?.split(',').map((r) => numberFlag(r, 'gradual', { min: 0, max: 1 })!),
    },
    sampling: {
      maxTokens: numberFlag(values.maxTokens, 'max-tokens', { integer: true, min: 0 })!,
      temperature: numberFlag(values.temperature, 'temperature', { min: 0 })!,
      topK: numberFlag(values.topK, 'top-k', { integer: true, min: 1 }),
      topP: numberFlag(values.topP, 'top-p', { min: 0, max: 1 }),
      seed: numberFlag(values.seed, 'seed', { integer: true, min: 0, max: 2 ** 32 - 1 })!,
      stop: values.stop,
    },
    ep: values.ep ?? config.executionProvider,
    weights: values.weights ?? config.weights,
    kvDtype: values.kvDtype ?? config.kvDtype,
    json: values.json ?? false,
    logits: values.logits ?? false,
  };
}

/** --template: a template name, or a file holding a Jinja chat template. */
function templateFlag(raw: string): TemplateChoice {
  if ((TEMPLATE_NAMES as readonly string[]).includes(raw)) return raw as TemplateName;
  try {
    return { jinja: readFileSync(raw, 'utf8') };
  } catch {
    throw new InvalidArgumentError(
      `--template must be one of ${TEMPLATE_NAMES.join(', ')} or a readable file, got "${raw}"`,
    );
  }
}

/** The engine's own names for blend's options, as the flags that set them (for its error messages). */
const FLAG_OF_OPTION: Record<string, string> = {
  checkLayer: '--check-layer',
  gradualRatios: '--gradual',
  ratio: '--ratio',
  maxTokens: '--max-tokens',
};

export async function generateCommand(
  values: GenerateFlags,
  out: (s: string) => void,
  config: Config,
  given: ReadonlySet<string> = new Set(),
): Promise<void> {
  const req = parseGenerateArgs(values, config, given);
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
    const answer = await generate(engine, req).catch((err: unknown) => {
      if (!(err instanceof InvalidArgumentError)) throw err;
      const named = err.message.replace(/^(\w+)\b/, (w) => FLAG_OF_OPTION[w] ?? w);
      throw named === err.message ? err : new InvalidArgumentError(named);
    });
    const layers = engine.config.numLayers;
    if (req.blend.mode === 'blend' && req.blend.checkLayer === undefined && layers <= DEFAULT_CHECK_LAYER) {
      process.stderr.write(
        `cacheblend: the model has ${layers} layer${layers === 1 ? '' : 's'}: blend checks at layer ` +
          `${answer.prefill.checkLayer} (the default check layer is ${DEFAULT_CHECK_LAYER})\n`,
      );
    }
    out(req.json ? `${JSON.stringify(jsonResult(req, answer))}\n` : `${answer.text}\n`);
  } finally {
    await engine.dispose();
  }
}

async function generate(engine: Engine, req: GenerateRequest): Promise<BlendAnswer> {
  const tok = engine.model.tokenizer;
  const fp = engine.kvFingerprint;
  const spec = { template: req.template, system: req.system, question: req.question };
  const frame = planFrame(tok, fp, spec, '', req.plain ? '--prompt' : '--question');
  const chunks = planChunkTexts(tok, fp, req.chunks, '', (i) => `--chunk ${i + 1}`);
  checkContextFits(
    plannedTokens({ ...frame, chunks }),
    req.sampling.maxTokens,
    engine.config.maxPositionEmbeddings,
    {
      prompt: req.plain ? '--prompt' : '--chunk/--question',
      maxTokens: '--max-tokens',
    },
  );
  // Caches are precomputed (offline in the service) before the clock starts: TTFT is the query's cost.
  const cached = (ids: number[]): Promise<ChunkKvSource> =>
    req.blend.mode === 'full' ? Promise.resolve(tokenIdsOnly(ids)) : storedChunk(engine, ids, req.kvDtype);
  const prefix = frame.prefix ? await cached(frame.prefix.tokenIds) : null;
  const sources = await Promise.all(chunks.map((c) => cached(c.tokenIds)));
  return blendAndDecode(
    engine,
    { prefix, chunks: sources, suffixIds: frame.suffixIds },
    req.blend,
    req.sampling,
  );
}

function jsonResult(req: GenerateRequest, { prefill, tokens, text, totalMs, finishReason }: BlendAnswer) {
  return {
    mode: req.blend.mode,
    promptTokens: prefill.promptTokens,
    prefixTokens: prefill.prefixTokens,
    contextTokens: prefill.contextTokens,
    recomputedTokens: prefill.recomputedTokens,
    ...(req.blend.mode === 'blend' && { ratio: prefill.ratio, checkLayer: prefill.checkLayer }),
    generatedTokens: tokens,
    text,
    finishReason,
    ttftMs: roundMs(prefill.timings.ttftMs),
    totalMs: roundMs(totalMs),
    ...(req.logits && { firstTokenLogits: Array.from(prefill.firstTokenLogits) }),
  };
}
