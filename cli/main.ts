/**
 * The `cacheblend` command, on commander: the engine directly (`generate`) and the service's entry points
 * (`serve`, `api`, `worker`, `precompute`, `rebuild`), each with its own `--help`; `--version`. Service
 * commands take every setting as a flag (cli/service-flags.ts). Bad usage prints a message and exits 2.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Argument, Command, CommanderError } from 'commander';
import { loadConfig } from '../core/config/index.js';
import { CacheBlendError, InvalidArgumentError, errorMessage } from '../core/errors.js';
import { projectRoot } from '../core/util/fs.js';
import { calibrateCommand, defineCalibrateFlags, type CalibrateFlags } from './calibrate.js';
import { defineGenerateFlags, generateCommand, type GenerateFlags } from './generate.js';
import { applySettingFlags, withSettingFlags } from './service-flags.js';

type Out = (s: string) => void;
/** Where a command's action leaves its exit code. */
type SetCode = (code: number) => void;

function version(): string {
  const pkg = JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** `--gpu N` on a worker: GPU_INDEX for this process (the flag beats the variable). */
function gpuFlag(value: string | undefined): void {
  if (value === undefined) return;
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('--gpu needs a GPU index (0, 1, …)');
  process.env.GPU_INDEX = value;
}

/** A service command: its own flags, then every setting flag; `run` gets the parsed options. */
function serviceCommand(
  program: Command,
  setCode: SetCode,
  spec: string,
  summary: string,
  define: (cmd: Command) => Command,
  run: (opts: Record<string, unknown>, args: string[]) => Promise<number>,
): void {
  const cmd = define(program.command(spec).description(summary));
  withSettingFlags(cmd).action(async (...params: unknown[]) => {
    const command = params[params.length - 1] as Command;
    const opts = command.opts();
    applySettingFlags(opts);
    setCode(await run(opts, command.args));
  });
}

function defineServiceCommands(program: Command, out: Out, setCode: SetCode): void {
  const add = serviceCommand.bind(null, program, setCode);
  add(
    'serve',
    'API + blend worker + precompute worker in one process (npm start)',
    (c) =>
      c
        .option('--api-only', 'start only the API')
        .option('--gpus <list>', 'a blend and a precompute worker process per GPU: 0,1 or all'),
    async (opts) => {
      await (await import('./serve.js')).serve({ apiOnly: opts.apiOnly === true, gpus: opts.gpus as string });
      return 0;
    },
  );
  add(
    'api',
    'the HTTP API alone (npm run api)',
    (c) => c,
    async () => {
      await (await import('../api/main.js')).runApi();
      return 0;
    },
  );
  add(
    'worker',
    'one worker alone: blend (npm run worker) or precompute (npm run precompute-worker)',
    (c) =>
      c
        .addArgument(new Argument('<kind>', 'blend or precompute').choices(['blend', 'precompute']))
        .option('--gpu <n>', 'the GPU this worker computes on (GPU_INDEX)'),
    async (opts, [kind]) => {
      gpuFlag(opts.gpu as string | undefined);
      if (kind === 'blend') await (await import('../worker/main.js')).runBlendWorker();
      else await (await import('../precompute/main.js')).runPrecomputeWorker();
      return 0;
    },
  );
  add(
    'precompute',
    "batch precompute: every .txt/.md file becomes a document, and the command waits until its chunks' caches are stored",
    (c) =>
      c
        .argument('<paths...>', 'folders (walked recursively) and files')
        .option('--remote', "don't run a precompute worker here; rely on workers started elsewhere")
        .option(
          '--id-prefix <p>',
          "prefix for document ids (ids are the files' paths relative to the folder)",
        )
        .option('--timeout <seconds>', 'give up waiting after this many seconds', '3600')
        .option('--json', 'print the summary as one JSON object'),
    async (opts, paths) => {
      const argv = [
        ...(opts.remote ? ['--remote'] : []),
        ...(opts.idPrefix !== undefined ? ['--id-prefix', String(opts.idPrefix)] : []),
        ...['--timeout', String(opts.timeout)],
        ...(opts.json ? ['--json'] : []),
        '--',
        ...paths,
      ];
      return (await (await import('../precompute/batch.js')).precomputeBatch(argv, { out })).code;
    },
  );
  add(
    'rebuild',
    'restore the document index in Redis from the manifests in the object store, and enqueue their chunks (stored caches are checked, not recomputed)',
    (c) => c.option('--json', 'print the summary as one JSON object'),
    async (opts) => {
      const summary = await (await import('./rebuild.js')).rebuildCommand({ json: opts.json === true }, out);
      return summary.damaged > 0 ? 1 : 0;
    },
  );
}

/** The flags typed on a command's line (as `--name`), not those left at their defaults. */
function typedFlags(cmd: Command): Set<string> {
  return new Set(
    cmd.options
      .filter((o) => cmd.getOptionValueSource(o.attributeName()) === 'cli')
      .map((o) => o.long ?? o.flags),
  );
}

function buildProgram(out: Out, setCode: SetCode): Command {
  const program = new Command('cacheblend')
    .description('CacheBlend: answers over documents from precomputed chunk KV caches')
    .version(version(), '-V, --version')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: (s) => process.stderr.write(s) })
    .showHelpAfterError('(add --help for usage)');
  const generate = defineGenerateFlags(
    program
      .command('generate')
      .description('run the engine directly: a prompt, or chunks and a question in any mode'),
  );
  generate.action(async (flags: GenerateFlags, cmd: Command) => {
    await generateCommand(flags, out, loadConfig(), typedFlags(cmd));
  });
  const calibrate = defineCalibrateFlags(
    program
      .command('calibrate')
      .description("the model's correctness gate: blend against full prefill on a small sample"),
  );
  calibrate.action(async (flags: CalibrateFlags) => {
    setCode(await calibrateCommand(flags, out, loadConfig()));
  });
  defineServiceCommands(program, out, setCode);
  return program;
}

export async function main(argv: string[], out: Out = (s) => process.stdout.write(s)): Promise<number> {
  let code = 0;
  const program = buildProgram(out, (c) => (code = c));
  if (argv.length === 0) {
    out(program.helpInformation());
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const usage = err instanceof InvalidArgumentError;
    process.stderr.write(`cacheblend: ${err instanceof CacheBlendError ? err.message : errorMessage(err)}\n`);
    if (usage) process.stderr.write(`(add --help for usage)\n`);
    return usage ? 2 : 1;
  }
}
