/**
 * The service under load: `cacheblend serve` (API + blend + precompute worker in one process, stories260K)
 * on its own redis-server, driven by closed-loop clients that each send one query after another. For each
 * concurrency (BENCH_LOAD_CONCURRENCY) and two settings of admission control — QUERY_QUEUE_LIMIT =
 * BENCH_LOAD_QUEUE_LIMIT (shedding) and a limit no load reaches (no shedding) — it reports answered
 * queries per second, the share shed with 429, and p50/p95/p99 latency of the answered ones. Clients
 * honour Retry-After, as well-behaved ones do.
 *
 *   npm run bench:load        → table on stdout, bench/results/load.json and load.svg
 *
 * The client is written here rather than taken from autocannon: it must split latencies by status and
 * sleep for Retry-After, which a fixed-rate load generator does not do.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadBenchSettings } from '../core/config/bench.js';
import { projectRoot } from '../core/util/fs.js';
import { lineChart, machine, printTable, storySets, writeResult } from './common.js';

interface PhaseResult {
  shedding: boolean;
  queueLimit: number;
  concurrency: number;
  seconds: number;
  requests: number;
  answered: number;
  shed: number;
  errors: number;
  answeredPerS: number;
  shedShare: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A child process, stopped with SIGTERM (then SIGKILL). */
function child(cmd: string, args: string[], env: Record<string, string | undefined>): ChildProcess {
  const c = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
  process.once('exit', () => c.kill('SIGKILL'));
  return c;
}

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function until(what: string, ms: number, ok: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`bench:load: ${what} did not happen within ${ms} ms`);
    await sleep(100);
  }
}

/** Start the whole service on `redisUrl`; resolves with its base URL once /readyz says ready. */
async function startService(dir: string, redisUrl: string, queueLimit: number) {
  const port = await freePort();
  const proc = child(process.execPath, [path.join(projectRoot(), 'bin', 'cacheblend.js'), 'serve'], {
    ...process.env,
    PORT: String(port),
    REDIS_URL: redisUrl,
    DATA_DIR: dir,
    QUEUE_PREFIX: `load-${queueLimit}`,
    QUERY_QUEUE_LIMIT: String(queueLimit),
    LOG_LEVEL: 'silent',
  });
  const url = `http://127.0.0.1:${port}`;
  await until('service ready', 60_000, async () => (await fetch(`${url}/readyz`)).status === 200);
  return { url, proc };
}

async function ingest(url: string): Promise<void> {
  const text = storySets()
    .slice(0, 2)
    .flatMap((s) => s.chunks)
    .join('\n\n');
  const r = await fetch(`${url}/v1/documents`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'load', text }),
  });
  if (r.status !== 202) throw new Error(`bench:load: ingest answered ${r.status}: ${await r.text()}`);
  await until('document ready', 60_000, async () => {
    const s = (await (await fetch(`${url}/v1/documents/load`)).json()) as { status: string };
    return s.status === 'ready';
  });
}

const QUERY = JSON.stringify({
  question: 'Lily and the dog went to the park and',
  documents: ['load'],
  maxTokens: 16,
});

/** One closed-loop client until `deadline`: latencies of answered queries, counts of the rest. */
async function client(url: string, deadline: number, out: { lat: number[]; shed: number; errors: number }) {
  while (Date.now() < deadline) {
    const t0 = performance.now();
    try {
      const r = await fetch(`${url}/v1/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: QUERY,
      });
      await r.arrayBuffer();
      if (r.status === 200) out.lat.push(performance.now() - t0);
      else if (r.status === 429) {
        out.shed++;
        await sleep(Math.min(5, Number(r.headers.get('retry-after') ?? 1)) * 1000);
      } else out.errors++;
    } catch {
      out.errors++;
    }
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function phase(
  url: string,
  concurrency: number,
  seconds: number,
  queueLimit: number,
  shedding: boolean,
) {
  const out = { lat: [] as number[], shed: 0, errors: 0 };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: concurrency }, () => client(url, t0 + seconds * 1000, out)));
  const elapsed = (Date.now() - t0) / 1000;
  const lat = out.lat.sort((a, b) => a - b);
  const requests = lat.length + out.shed + out.errors;
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    shedding,
    queueLimit,
    concurrency,
    seconds: round(elapsed),
    requests,
    answered: lat.length,
    shed: out.shed,
    errors: out.errors,
    answeredPerS: round(lat.length / elapsed),
    shedShare: Math.round((out.shed / Math.max(1, requests)) * 1000) / 1000,
    p50Ms: round(percentile(lat, 50)),
    p95Ms: round(percentile(lat, 95)),
    p99Ms: round(percentile(lat, 99)),
  } satisfies PhaseResult;
}

async function startRedis(dir: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = child(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', ''],
    process.env,
  );
  await until('redis-server', 10_000, async () => {
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.end(resolve));
      s.once('error', reject);
    });
    return true;
  });
  return { url: `redis://127.0.0.1:${port}`, proc };
}

async function main(): Promise<void> {
  const settings = loadBenchSettings();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-load-'));
  const redis = await startRedis(dir);
  const results: PhaseResult[] = [];
  try {
    for (const [shedding, limit] of [
      [true, settings.loadQueueLimit],
      [false, 1_000_000],
    ] as const) {
      const svc = await startService(path.join(dir, `svc-${limit}`), redis.url, limit);
      try {
        await ingest(svc.url);
        await phase(svc.url, 2, 2, limit, shedding); // warm up: caches, JIT
        for (const c of settings.loadConcurrency) {
          results.push(await phase(svc.url, c, settings.loadSeconds, limit, shedding));
          await sleep(2_000); // let the queue drain between phases
        }
      } finally {
        await stop(svc.proc);
      }
    }
  } finally {
    await stop(redis.proc);
    await rm(dir, { recursive: true, force: true });
  }
  report(results, settings.loadSeconds);
}

function report(results: PhaseResult[], seconds: number): void {
  printTable(
    ['QUERY_QUEUE_LIMIT', 'clients', 'answered/s', 'shed (429)', 'errors', 'p50 ms', 'p95 ms', 'p99 ms'],
    results.map((r) => [
      r.shedding ? r.queueLimit : 'off',
      r.concurrency,
      r.answeredPerS,
      `${(r.shedShare * 100).toFixed(1)}%`,
      r.errors,
      r.p50Ms,
      r.p95Ms,
      r.p99Ms,
    ]),
  );
  const json = writeResult('load.json', {
    machine: machine('cpu'),
    model: 'stories260K',
    secondsPerPhase: seconds,
    query: JSON.parse(QUERY) as unknown,
    results,
  });
  const series = (shedding: boolean, key: 'p50Ms' | 'p99Ms') => ({
    name: `${key === 'p50Ms' ? 'p50' : 'p99'} ${shedding ? 'shedding' : 'no limit'}`,
    points: results.filter((r) => r.shedding === shedding).map((r) => ({ x: r.concurrency, y: r[key] })),
  });
  const svg = writeResult(
    'load.svg',
    lineChart({
      title: 'Latency of answered queries under load',
      xLabel: 'concurrent clients',
      yLabel: 'ms',
      series: [series(true, 'p50Ms'), series(true, 'p99Ms'), series(false, 'p50Ms'), series(false, 'p99Ms')],
      logY: true,
    }),
  );
  console.log(`wrote ${json} and ${svg}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
