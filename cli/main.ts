import { parseArgs } from 'node:util';
import {
  tokenIdsOnly,
  BLEND_MODES,
  type BlendMode,
  DEVIATION_METRICS,
  type DeviationMetric,
} from '../core/blend/index.js';
import { CacheBlendError, InvalidArgumentError } from '../core/errors.js';
import type { KvDtype } from '../core/kv/format.js';
import { Engine, type ExecutionProvider } from '../core/model/engine.js';
import { decode, type SamplingOptions } from '../core/model/generate.js';
import { loadModel } from '../core/model/load.js';
import {
  answerText,
  blendAndDecode,
  promptIds as buildPromptIds,
  storedChunk,
} from '../core/inference/pipeline.js';

const USAGE = `usage: cacheblend generate --model <path|name> (--prompt <text> | --chunk <text>... --question <text>)
         [--mode full|prefix|reuse|blend] [--ratio R] [--check-layer N] [--metric k|v|kv]
         [--gradual R1,R2,...] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
         [--ep cpu|webgpu|cuda] [--kv-dtype float16|float32] [--json] [--logits]

  --prompt      plain generation: BOS + the tokenized text, prefilled in full
  --chunk       a context chunk (repeatable), tokenized on its own; its KV cache is precomputed alone
  --question    the question that follows the chunks
  --mode        how the chunks' caches are used (default blend)
  --ratio       fraction of context tokens blend recomputes (default 0.15)
  --kv-dtype    precision chunk caches are stored in, as the service stores them (default float16)
  --json        print one JSON object instead of the text
  --logits      with --json: include firstTokenLogits

service:  cacheblend serve [--api-only]            API + both workers (npm start)
          cacheblend worker blend|precompute       one worker alone (npm run worker / precompute-worker)
          cacheblend precompute [options] <path>…  batch precompute (npm run precompute)`;

function numberFlag(values: Record<string, unknown>, name: string, integer: boolean): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new InvalidArgumentError(`--${name} must be ${integer ? 'an integer' : 'a number'}, got "${raw}"`);
  }
  return n;
}

export async function main(
  argv: string[],
  out: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    out(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === 'serve' || command === 'worker' || command === 'precompute') {
    return serviceCommand(command, rest);
  }
  if (command !== 'generate') {
    process.stderr.write(`cacheblend: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }
  try {
    await generateCommand(rest, out);
    return 0;
  } catch (err) {
    const usage =
      err instanceof InvalidArgumentError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`cacheblend: ${msg}\n`);
    if (usage) process.stderr.write(`${USAGE}\n`);
    return usage ? 2 : err instanceof CacheBlendError ? 1 : 1;
  }
}

/** The service's entry points (used by the container image), loaded only when asked for. */
async function serviceCommand(command: string, rest: string[]): Promise<number> {
  if (command === 'serve') {
    await (await import('../api/main.js')).serve(rest);
    return 0;
  }
  if (command === 'precompute')
    return (await (await import('../precompute/batch.js')).precomputeBatch(rest)).code;
  if (rest[0] === 'blend') await (await import('../worker/main.js')).runBlendWorker();
  else if (rest[0] === 'precompute') await (await import('../precompute/main.js')).runPrecomputeWorker();
  else {
    process.stderr.write(`cacheblend: worker needs "blend" or "precompute"\n${USAGE}\n`);
    return 2;
  }
  return 0;
}

async function generateCommand(argv: string[], out: (s: string) => void): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
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
    },
    strict: true,
    allowPositionals: false,
  });
  if (!values.model) throw new InvalidArgumentError('--model is required');
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
  const mode = (values.mode ?? (plain ? 'full' : 'blend')) as BlendMode;
  if (!BLEND_MODES.includes(mode))
    throw new InvalidArgumentError(`--mode must be one of ${BLEND_MODES.join(', ')}`);
  if (plain && mode !== 'full')
    throw new InvalidArgumentError('--prompt runs in full mode; use --chunk/--question for other modes');
  const metric = (values.metric ?? 'k') as DeviationMetric;
  if (!DEVIATION_METRICS.includes(metric))
    throw new InvalidArgumentError(`--metric must be one of ${DEVIATION_METRICS.join(', ')}`);
  const ep = (values.ep ?? process.env.EXECUTION_PROVIDER ?? 'cpu') as ExecutionProvider;
  if (!['cpu', 'webgpu', 'cuda'].includes(ep))
    throw new InvalidArgumentError('--ep must be cpu, webgpu or cuda');
  const kvDtype = (values['kv-dtype'] ?? 'float16') as KvDtype;
  if (kvDtype !== 'float16' && kvDtype !== 'float32')
    throw new InvalidArgumentError('--kv-dtype must be float16 or float32');
  const ratio = numberFlag(values, 'ratio', false);
  const gradualRatios = values.gradual?.split(',').map((s) => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isFinite(n))
      throw new InvalidArgumentError(`--gradual: "${s}" is not a number`);
    return n;
  });
  const sampling: SamplingOptions = {
    maxTokens: numberFlag(values, 'max-tokens', true) ?? 32,
    temperature: numberFlag(values, 'temperature', false) ?? 0,
    topK: numberFlag(values, 'top-k', true),
    topP: numberFlag(values, 'top-p', false),
    seed: numberFlag(values, 'seed', true) ?? 0,
  };

  const model = await loadModel(values.model);
  const engine = await Engine.create(model, { executionProvider: ep });
  try {
    const tok = model.tokenizer;
    const chunkIds = chunks.map((c, i) => {
      const ids = tok.encode(c);
      if (ids.length === 0) throw new InvalidArgumentError(`--chunk ${i + 1} is empty`);
      return ids;
    });
    // --prompt: BOS + the text (BOS alone for an empty prompt), prefilled in full.
    const questionIds = tok.encode(plain ? values.prompt! : values.question!);
    if (questionIds.length === 0 && !plain) throw new InvalidArgumentError('--question is empty');
    // Caches are precomputed (offline in the service) before the clock starts: TTFT is the query's cost.
    const sources =
      mode === 'full'
        ? chunkIds.map(tokenIdsOnly)
        : await Promise.all(chunkIds.map((ids) => storedChunk(engine, ids, kvDtype)));
    const t0 = performance.now();
    let prefill;
    let tokens: number[];
    if (plain) {
      const cache = engine.newCache(1 + questionIds.length + sampling.maxTokens);
      const logits = await engine.forward(cache, [model.config.bosTokenId, ...questionIds]);
      const ttftMs = performance.now() - t0;
      const promptTokens = cache.length;
      prefill = {
        promptTokens,
        contextTokens: 0,
        recomputedTokens: 0,
        ratio: 1,
        firstTokenLogits: logits,
        timings: { ttftMs },
      };
      ({ tokens } = await decode(engine, cache, prefill.firstTokenLogits, sampling));
    } else {
      ({ prefill, tokens } = await blendAndDecode(
        engine,
        sources,
        questionIds,
        { mode, ratio, metric, gradualRatios, checkLayer: numberFlag(values, 'check-layer', true) },
        sampling,
      ));
    }
    const totalMs = performance.now() - t0;
    const text = answerText(tok, buildPromptIds(model.config.bosTokenId, sources, questionIds), tokens);
    if (values.json) {
      const result: Record<string, unknown> = {
        mode,
        promptTokens: prefill.promptTokens,
        contextTokens: prefill.contextTokens,
        recomputedTokens: prefill.recomputedTokens,
        ratio: mode === 'blend' ? prefill.ratio : undefined,
        generatedTokens: tokens,
        text,
        ttftMs: round(prefill.timings.ttftMs),
        totalMs: round(totalMs),
      };
      if (values.logits) result.firstTokenLogits = Array.from(prefill.firstTokenLogits);
      out(`${JSON.stringify(result)}\n`);
    } else {
      out(`${text}\n`);
    }
  } finally {
    await engine.dispose();
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
