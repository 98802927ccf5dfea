/**
 * Real backing services for tests: a redis-server (or a Redis Cluster) and, from s3-server.ts, an s3rver
 * child process, each on a free loopback port with its own temporary directory. Every `start*` returns a
 * `stop()` that tears it down; processes still running when the test process exits are killed
 * (child-processes.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../core/config/index.js';
import { trackChild } from './child-processes.js';

export { startS3, type S3Handle } from './s3-server.js';

export interface RedisHandle {
  /** e.g. redis://127.0.0.1:41234 */
  url: string;
  port: number;
  /** The server's process id (while it runs). */
  pid(): number | undefined;
  /** SIGKILL the server (its data directory stays): a crash or an outage. */
  kill(): Promise<void>;
  /** Start it again on the same port and directory (an AOF is replayed when the server persists). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface RedisOptions {
  timeoutMs?: number;
  bin?: string;
  /**
   * Persist with an append-only file (fsync every second) — what the service requires (default true);
   * false starts a Redis that forgets everything on restart (to test that the service refuses it).
   */
  durable?: boolean;
  /** Extra redis-server arguments. */
  args?: string[];
}

/** A prefix no other test (or test run) uses, e.g. `t-lx3k9a-5f2c1e9b/`, ending in '/'. */
export function uniquePrefix(label = 't'): string {
  const safe = label.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 40) || 't';
  return `${safe}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}/`;
}

/** A TCP port that was free a moment ago (the caller must cope with losing a race for it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** One redis-server child on `port` with data in `dir`; resolves once it answers PING. */
async function spawnRedis(
  bin: string,
  port: number,
  dir: string,
  args: string[],
  timeoutMs: number,
): Promise<{ child: ChildProcess; exited: Promise<{ code: number | null; error?: Error }> }> {
  const child = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = trackChild(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const ready = await Promise.race([waitForPing(port, timeoutMs).then(() => 'ready' as const), exited]);
  if (ready === 'ready') return { child, exited };
  child.kill('SIGKILL');
  if (ready.error && (ready.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error(
      `${bin} is not installed or not on PATH; install it (Debian: apt-get install -y redis-server) ` +
        'or set REDIS_SERVER_BIN',
    );
  }
  throw new Error(
    `${bin} exited (code ${String(ready.code)}) before answering PING on port ${port}: ${
      ready.error?.message ?? output.trim()
    }`,
  );
}

function redisArgs(durable: boolean): string[] {
  return [
    '--save',
    '',
    '--appendonly',
    durable ? 'yes' : 'no',
    '--appendfsync',
    'everysec',
    '--maxmemory-policy',
    'noeviction',
  ];
}

/**
 * Starts `redis-server` (from PATH, or REDIS_SERVER_BIN through core/config) on a free loopback port with
 * an append-only file (unless `durable: false`) and `maxmemory-policy noeviction` (BullMQ requires it, and
 * the service refuses a Redis without both), waiting until it answers PING.
 */
export async function startRedis(options: RedisOptions = {}): Promise<RedisHandle> {
  const bin = options.bin ?? loadConfig().redisServerBin;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-redis-'));
  const args = [...redisArgs(options.durable ?? true), ...(options.args ?? [])];
  const timeoutMs = options.timeoutMs ?? 10_000;
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    let running: Awaited<ReturnType<typeof spawnRedis>>;
    try {
      running = await spawnRedis(bin, port, dir, args, timeoutMs);
    } catch (err) {
      lastError = err;
      if (/not installed/.test((err as Error).message)) break;
      continue; // most likely lost a race for the port: try another one
    }
    const kill = async () => {
      if (running.child.exitCode === null && running.child.signalCode === null) {
        running.child.kill('SIGKILL');
        await running.exited;
      }
    };
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      pid: () => running.child.pid,
      kill,
      restart: async () => {
        await kill();
        running = await spawnRedis(bin, port, dir, args, timeoutMs);
      },
      stop: async () => {
        if (running.child.exitCode === null && running.child.signalCode === null) {
          running.child.kill('SIGTERM');
          const timer = setTimeout(() => running.child.kill('SIGKILL'), 5_000);
          await running.exited;
          clearTimeout(timer);
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}

export interface RedisClusterHandle {
  /** The masters' addresses, `127.0.0.1:<port>`. */
  nodes: string[];
  /** REDIS_CLUSTER_NODES for the service. */
  clusterNodes: string;
  stop(): Promise<void>;
}

/** A port whose cluster bus port (port + 10000) is free too. */
async function freeClusterPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 25_000);
    if ((await portIsFree(port)) && (await portIsFree(port + 10_000))) return port;
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function runCli(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${bin} ${args.join(' ')}: ${out}`)),
    );
  });
}

/**
 * A real three-master Redis Cluster on loopback ports (persistent, noeviction), joined with
 * `redis-cli --cluster create`, resolving once every node reports `cluster_state:ok`.
 */
export async function startRedisCluster(
  options: { masters?: number; bin?: string } = {},
): Promise<RedisClusterHandle> {
  const bin = options.bin ?? loadConfig().redisServerBin;
  // redis-cli ships beside redis-server (Debian: redis-tools, a dependency of redis-server).
  const cliBin = bin.includes('/') ? path.join(path.dirname(bin), 'redis-cli') : 'redis-cli';
  const root = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-cluster-'));
  const started: Awaited<ReturnType<typeof spawnRedis>>[] = [];
  const ports: number[] = [];
  const stop = async () => {
    for (const s of started) if (s.child.exitCode === null) s.child.kill('SIGTERM');
    await Promise.all(started.map((s) => s.exited));
    await rm(root, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < (options.masters ?? 3); i++) {
      const port = await freeClusterPort();
      const dir = path.join(root, String(port));
      await mkdir(dir);
      const args = [
        ...redisArgs(true),
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-node-timeout',
        '5000',
      ];
      started.push(await spawnRedis(bin, port, dir, args, 10_000));
      ports.push(port);
    }
    const nodes = ports.map((p) => `127.0.0.1:${p}`);
    await runCli(cliBin, ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes']);
    const deadline = Date.now() + 20_000;
    for (const p of ports) {
      while (!/cluster_state:ok/.test(await runCli(cliBin, ['-p', String(p), 'cluster', 'info']))) {
        if (Date.now() > deadline) throw new Error(`cluster node ${p} did not reach cluster_state:ok`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return { nodes, clusterNodes: nodes.join(','), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Resolves once a Redis server on `port` answers `+PONG`. */
async function waitForPing(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pingOnce(port)) return;
    if (Date.now() > deadline)
      throw new Error(`redis-server on port ${port} did not answer PING in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function pingOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}
