/**
 * The `cacheblend` command: the engine directly (`generate`) and the service's entry points (`serve`,
 * `api`, `worker`, `precompute`), each with `--help`. Bad usage prints a message and exits 2.
 */
import { loadConfig } from '../core/config/index.js';
import { CacheBlendError, InvalidArgumentError, errorMessage } from '../core/errors.js';
import { CALIBRATE_USAGE, calibrateCommand } from './calibrate.js';
import { GENERATE_USAGE, generateCommand } from './generate.js';

const SERVICE_USAGE = `service commands:
  cacheblend serve [--api-only]            API + both workers in one process (npm start)
  cacheblend serve --gpus 0,1|all          API + a blend and a precompute worker process per GPU
  cacheblend api                           the HTTP API alone (npm run api)
  cacheblend worker blend|precompute [--gpu N]
                                           one worker alone (npm run worker / precompute-worker)
  cacheblend precompute [options] <path>…  batch precompute of .txt/.md files (npm run precompute)
  cacheblend rebuild [--json]              restore the document index in Redis from the stored manifests
  cacheblend calibrate [--model …]         blend vs full on a small sample: the model's correctness gate
They read their settings from the environment (see the README's configuration table).`;

const USAGE = `usage: cacheblend <command> [options]   (cacheblend <command> --help for one command)

${GENERATE_USAGE}

${SERVICE_USAGE}`;

type Out = (s: string) => void;

/** The usage a bad flag of a command prints (the service commands share SERVICE_USAGE). */
const USAGES: Record<string, string> = { generate: GENERATE_USAGE, calibrate: CALIBRATE_USAGE };
type Command = (rest: string[], out: Out) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  generate: async (rest, out) => {
    await generateCommand(rest, out, loadConfig());
    return 0;
  },
  serve: async (rest) => {
    await (await import('./serve.js')).serve(rest);
    return 0;
  },
  api: async () => {
    await (await import('../api/main.js')).runApi();
    return 0;
  },
  worker: async (rest) => {
    applyGpuFlag(rest);
    if (rest[0] === 'blend') await (await import('../worker/main.js')).runBlendWorker();
    else if (rest[0] === 'precompute') await (await import('../precompute/main.js')).runPrecomputeWorker();
    else throw new InvalidArgumentError('worker needs "blend" or "precompute"');
    return 0;
  },
  precompute: async (rest, out) =>
    (await (await import('../precompute/batch.js')).precomputeBatch(rest, { out })).code,
  calibrate: (rest, out) => calibrateCommand(rest, out, loadConfig()),
  rebuild: async (rest, out) => {
    const summary = await (await import('./rebuild.js')).rebuildCommand(rest, out);
    return summary.damaged > 0 ? 1 : 0;
  },
};

/** `--gpu N` on a worker: GPU_INDEX for this process (the flag beats the variable). */
function applyGpuFlag(rest: string[]): void {
  const i = rest.indexOf('--gpu');
  if (i < 0) return;
  const value = rest[i + 1];
  if (!value || !/^\d+$/.test(value)) throw new InvalidArgumentError('--gpu needs a GPU index (0, 1, …)');
  process.env.GPU_INDEX = value;
}

/** Commands whose --help is the service usage (generate and precompute print their own). */
const SERVICE_COMMANDS = new Set(['serve', 'api', 'worker', 'rebuild']);

export async function main(argv: string[], out: Out = (s) => process.stdout.write(s)): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    out(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    process.stderr.write(`cacheblend: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }
  if (SERVICE_COMMANDS.has(command) && (rest.includes('--help') || rest.includes('-h'))) {
    out(`${SERVICE_USAGE}\n`);
    return 0;
  }
  try {
    return await run(rest, out);
  } catch (err) {
    const usage = err instanceof InvalidArgumentError;
    process.stderr.write(`cacheblend: ${err instanceof CacheBlendError ? err.message : errorMessage(err)}\n`);
    if (usage) process.stderr.write(`${USAGES[command] ?? SERVICE_USAGE}\n`);
    return usage ? 2 : 1;
  }
}
