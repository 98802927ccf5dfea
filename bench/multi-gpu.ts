/**
 * `npm run bench:gpu -- multi`: one precompute worker per GPU against one worker on one GPU, through the
 * real service path — a redis-server, `cacheblend worker precompute --gpu i` processes on WebGPU, and a
 * `cacheblend precompute --remote` batch job over a fresh corpus each time (nothing already stored).
 * Throughput is the batch job's stored tokens per second. Then the same blend answer is generated on every
 * GPU (`GPU_INDEX=i cacheblend generate`), and a negative control shows the selection works: a process
 * pointed at a PCI address that is no GPU gets no WebGPU adapter. Writes bench/results/multi-gpu.json.
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
import { driPrimeTag, listGpus } from '../core/runtime/gpus.js';
import { machine, printTable, writeResult } from './common.js';
import { card } from './gpu-card.js';

const settings = loadBenchSettings();
const SHAPE = process.env.BENCH_MULTI_SHAPE ?? '1B';
const DOCS = Number(process.env.BENCH_MULTI_DOCS ?? 48);
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
    EXECUTION_PROVIDER: 'webgpu',
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
  const child = spawn(process.execPath, [CLI, 'worker', 'precompute', '--gpu', String(gpu)], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('precompute worker started')) resolve(child);
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

/** Stored tokens per second of a batch precompute job with one worker process on each of `gpus`. */
async function precomputeRun(model: string, redisUrl: string, gpus: number[]): Promise<number> {
  const run = `g${gpus.join('')}`;
  const env = serviceEnv(model, redisUrl, run);
  const workers = await Promise.all(gpus.map((g) => startWorker(env, g)));
  try {
    batch(env, corpus(`warm-${run}`, 2 * gpus.length, 7 + gpus.length)); // shaders compiled on every GPU
    const r = batch(env, corpus(`main-${run}`, DOCS, 100 + gpus.length));
    return r.tokensComputed / r.seconds;
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => new Promise((res) => w.once('exit', res))));
  }
}

function generateOn(model: string, extraEnv: Record<string, string>): { tokens?: number[]; error?: string } {
  const args = [CLI, 'generate', '--model', model, '--ep', 'webgpu', '--mode', 'blend', '--json'];
  const chunks = ['the red box is near a blue cup.', 'the green ball is on the table.'];
  for (const c of chunks) args.push('--chunk', c);
  args.push('--question', 'where is the green ball?', '--max-tokens', '16');
  const r = spawnSync(process.execPath, args, {
    env: { ...process.env, ...extraEnv },
    encoding: 'utf8',
    timeout: 600_000,
  });
  if (r.status !== 0) return { error: r.stderr.trim().split('\n').slice(-2).join(' ') };
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

const gpus = listGpus();
console.log(`GPUs: ${gpus.map((g) => `${g.index} ${g.pciAddress}`).join(', ') || 'none'}`);
const model = checkpoint();
const redis = await startRedis();
try {
  const oneGpuTokPerS = await precomputeRun(model, redis.url, [0]);
  const twoGpuTokPerS = gpus.length >= 2 ? await precomputeRun(model, redis.url, [0, 1]) : null;
  const answers = gpus.map((g) => generateOn(model, { GPU_INDEX: String(g.index) }));
  const equal =
    answers.length >= 2 && answers.every((a) => a.tokens)
      ? answers.every((a) => JSON.stringify(a.tokens) === JSON.stringify(answers[0].tokens))
      : null;
  // Negative control: the device-select layer shown a PCI address with no GPU leaves WebGPU no adapter.
  const control = generateOn(model, {
    DRI_PRIME: driPrimeTag('0000:ff:1f.7'),
    MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1',
  });
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
    selectionControl: { pciAddress: '0000:ff:1f.7', failed: Boolean(control.error), error: control.error },
  };
  writeResult(gpus.length >= 2 ? 'multi-gpu.json' : 'multi-gpu-1gpu.json', result);
  printTable(
    ['card', 'shape', 'GPUs', '1 GPU tok/s', '2 GPUs tok/s', 'speedup', 'answers equal', 'bad address fails'],
    [
      [
        result.card,
        SHAPE,
        gpus.length,
        oneGpuTokPerS,
        twoGpuTokPerS ?? '-',
        result.precompute.speedup ?? '-',
        String(equal ?? '-'),
        String(result.selectionControl.failed),
      ],
    ],
  );
} finally {
  redis.child.kill('SIGKILL');
}
