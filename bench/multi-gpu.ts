/**
 * `npm run bench:gpu -- multi`: one precompute worker per GPU against one worker on one GPU, through the
 * real service path — a redis-server, `cacheblend worker precompute --gpu i` processes on WebGPU, and a
 * `cacheblend precompute --remote` batch job over a fresh corpus each time (nothing already stored).
 * Throughput is the batch job's stored tokens per second. Then the same blend answer is generated on every
 * GPU (`GPU_INDEX=i cacheblend generate`). The selection is checked from outside: nvidia-smi's process list
 * must show each worker on the GPU it was given (by PCI address) and on no other, and an index past the last
 * GPU must be refused with a message naming the GPUs. Writes bench/results/multi-gpu.json.
 *
 * BENCH_MULTI_SHAPE (default 1B; 125M, 1B or 8B from make_scale_checkpoints.py), BENCH_MULTI_DOCS
 * (documents per run, default 48), BENCH_SCALE_DIR (checkpoints), REDIS_SERVER_BIN.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBenchSettings } from '../core/config/bench.js';
import { listGpus } from '../core/runtime/gpus.js';
import { machine, printTable, writeResult } from './common.js';
import { card } from './gpu-card.js';

const settings = loadBenchSettings();
const SHAPE = process.env.BENCH_MULTI_SHAPE ?? '1B';
const DOCS = Number(process.env.BENCH_MULTI_DOCS ?? 48);
// A local model directory and provider, to rehearse the run without a GPU (e.g. models/stories260K, cpu).
const MODEL_DIR = process.env.BENCH_MULTI_MODEL;
const PROVIDER = process.env.BENCH_MULTI_EP ?? 'webgpu';
const CLI = fileURLToPath(new URL('../../bin/cacheblend.js', import.meta.url));
const SCRIPT = fileURLToPath(new URL('../../bench/make_scale_checkpoints.py', import.meta.url));
const work = mkdtempSync(path.join(os.tmpdir(), 'multi-gpu-'));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function startRedis(): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const dir = path.join(work, 'redis');
  mkdirSync(dir);
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  const args = ['--port', String(port), '--dir', dir, '--appendonly', 'yes', '--save', ''];
  const child = spawn(bin, [...args, '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));
  return { url: `redis://127.0.0.1:${port}`, child };
}

/** Deterministic prose-like text: words of the cbqa-3M vocabulary's range, distinct per corpus. */
function corpus(name: string, docs: number, seed: number): string {
  const dir = path.join(work, name);
  mkdirSync(dir);
  const words = [
    'the',
    'red',
    'box',
    'is',
    'near',
    'a',
    'blue',
    'cup',
    'and',
    'green',
    'ball',
    'on',
    'table',
  ];
  let x = seed;
  const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
  for (let d = 0; d < docs; d++) {
    const out: string[] = [];
    for (let w = 0; w < 900; w++) out.push(words[next() % words.length] + (next() % 7 === 0 ? '.' : ''));
    writeFileSync(path.join(dir, `doc-${seed}-${d}.txt`), out.join(' '));
  }
  return dir;
}

function serviceEnv(model: string, redisUrl: string, run: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    EXECUTION_PROVIDER: PROVIDER,
    MODEL: model,
    REDIS_URL: redisUrl,
    KV_STORE_URL: `file://${path.join(work, `kv-${run}`)}`,
    QUEUE_PREFIX: `mg-${run}`,
    DATA_DIR: path.join(work, `data-${run}`),
    LOG_LEVEL: 'info',
  };
}

/** Start a precompute worker on GPU `gpu`; resolves once it logs that it started. */
function startWorker(env: NodeJS.ProcessEnv, gpu: number): Promise<ChildProcess> {
  const gpuFlag = PROVIDER === 'cpu' ? [] : ['--gpu', String(gpu)];
  const child = spawn(process.execPath, [CLI, 'worker', 'precompute', ...gpuFlag], {
    env,
    stdio: ['ignore', 'inherit', 'pipe'], // the service logs to stderr
  });
  return new Promise((resolve, reject) => {
    let buf: string | null = '';
    child.stderr!.on('data', (d: Buffer) => {
      process.stderr.write(d);
      if (buf === null) return;
      buf += d.toString();
      if (buf.includes('precompute worker started')) {
        buf = null;
        resolve(child);
      }
    });
    child.once('exit', (code) => reject(new Error(`worker on GPU ${gpu} exited ${code}`)));
  });
}

function batch(env: NodeJS.ProcessEnv, dir: string): { tokensComputed: number; seconds: number } {
  const r = spawnSync(process.execPath, [CLI, 'precompute', '--remote', '--json', dir], {
    env,
    encoding: 'utf8',
    timeout: 900_000,
  });
  if (r.status !== 0) throw new Error(`batch failed: ${r.stderr.slice(-600)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { tokensComputed: number; seconds: number };
}

/** PCI addresses (sysfs form, lower case) of the GPUs each process id holds a context on, per nvidia-smi. */
function gpuPlacement(): Map<number, string[]> | null {
  const r = spawnSync('nvidia-smi', ['-q', '-x'], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const byPid = new Map<number, string[]>();
  for (const gpu of r.stdout.split('<gpu id="').slice(1)) {
    const address = gpu.slice(0, gpu.indexOf('"')).toLowerCase().slice(-12); // 00000000:18:00.0 → 0000:18:00.0
    for (const m of gpu.matchAll(/<pid>(\d+)<\/pid>/g)) {
      const pid = Number(m[1]);
      byPid.set(pid, [...(byPid.get(pid) ?? []), address]);
    }
  }
  return byPid;
}

interface Placement {
  gpu: number;
  expected: string;
  seenOn: string[] | null;
  correct: boolean | null;
}

/** Stored tokens per second of a batch precompute job with one worker process on each of `gpus`. */
async function precomputeRun(
  model: string,
  redisUrl: string,
  gpus: number[],
): Promise<{ tokPerS: number; placement: Placement[] }> {
  const run = `g${gpus.join('')}`;
  const env = serviceEnv(model, redisUrl, run);
  const workers = await Promise.all(gpus.map((g) => startWorker(env, g)));
  try {
    batch(env, corpus(`warm-${run}`, 2 * gpus.length, 7 + gpus.length)); // shaders compiled on every GPU
    const seen = gpuPlacement();
    const placement = gpus.map((g, i) => {
      const expected = hostGpus[g]?.pciAddress ?? '?';
      const seenOn = seen?.get(workers[i].pid!) ?? (seen ? [] : null);
      return { gpu: g, expected, seenOn, correct: seenOn && seenOn.length === 1 && seenOn[0] === expected };
    });
    const r = batch(env, corpus(`main-${run}`, DOCS, 100 + gpus.length));
    return { tokPerS: r.tokensComputed / r.seconds, placement };
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => new Promise((res) => w.once('exit', res))));
  }
}

function generateOn(model: string, extraEnv: Record<string, string>): { tokens?: number[]; error?: string } {
  const args = [CLI, 'generate', '--model', model, '--ep', PROVIDER, '--mode', 'blend', '--json'];
  const chunks = ['the red box is near a blue cup.', 'the green ball is on the table.'];
  for (const c of chunks) args.push('--chunk', c);
  args.push('--question', 'where is the green ball?', '--max-tokens', '16');
  const r = spawnSync(process.execPath, args, {
    env: { ...process.env, ...extraEnv },
    encoding: 'utf8',
    timeout: 600_000,
  });
  if (r.status !== 0) {
    const lines = r.stderr.trim().split('\n');
    return { error: lines.find((l) => l.startsWith('cacheblend:')) ?? lines.slice(-2).join(' ') };
  }
  return { tokens: (JSON.parse(r.stdout) as { generatedTokens: number[] }).generatedTokens };
}

function checkpoint(): string {
  const dir = settings.scaleDir;
  const r = spawnSync('python3', [SCRIPT, dir, SHAPE, '--reps', '1'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (r.status !== 0) throw new Error('make_scale_checkpoints.py failed');
  return path.join(dir, SHAPE);
}

const hostGpus = listGpus();
const gpus = hostGpus;
console.log(`GPUs: ${gpus.map((g) => `${g.index} ${g.pciAddress}`).join(', ') || 'none'}`);
const model = MODEL_DIR ? path.resolve(MODEL_DIR) : checkpoint();
const redis = await startRedis();
try {
  const one = await precomputeRun(model, redis.url, [0]);
  const two = gpus.length >= 2 ? await precomputeRun(model, redis.url, [0, 1]) : null;
  const oneGpuTokPerS = one.tokPerS;
  const twoGpuTokPerS = two?.tokPerS ?? null;
  const answers = gpus.map((g) => generateOn(model, { GPU_INDEX: String(g.index) }));
  const equal =
    answers.length >= 2 && answers.every((a) => a.tokens)
      ? answers.every((a) => JSON.stringify(a.tokens) === JSON.stringify(answers[0].tokens))
      : null;
  // The index after the last GPU: refused, naming the GPUs that exist.
  const badIndex = generateOn(model, { GPU_INDEX: String(gpus.length) });
  const placement = [...one.placement, ...(two?.placement ?? [])];
  const result = {
    card: card(),
    machine: machine('webgpu'),
    shape: SHAPE,
    documentsPerRun: DOCS,
    gpus: gpus.length,
    precompute: {
      oneGpuTokPerS,
      twoGpuTokPerS,
      speedup: twoGpuTokPerS === null ? null : twoGpuTokPerS / oneGpuTokPerS,
    },
    answersEqualAcrossGpus: equal,
    answers,
    placement,
    placementCorrect: placement.every((p) => p.correct === true),
    badIndexRefused: /does not exist: this host has/.test(badIndex.error ?? ''),
    badIndexError: badIndex.error,
  };
  writeResult(gpus.length >= 2 ? 'multi-gpu.json' : 'multi-gpu-1gpu.json', result);
  printTable(
    [
      'card',
      'shape',
      'GPUs',
      '1 GPU tok/s',
      '2 GPUs tok/s',
      'speedup',
      'answers equal',
      'placement ok',
      'bad index refused',
    ],
    [
      [
        result.card,
        SHAPE,
        gpus.length,
        oneGpuTokPerS,
        twoGpuTokPerS ?? '-',
        result.precompute.speedup ?? '-',
        String(equal ?? '-'),
        String(result.placementCorrect),
        String(result.badIndexRefused),
      ],
    ],
  );
} finally {
  redis.child.kill('SIGKILL');
}
