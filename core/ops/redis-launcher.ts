/**
 * `npm start` convenience: when REDIS_URL is unset and nothing answers at the default address, start a
 * redis-server child (if one is installed) with the settings of infra/start-redis.sh — data under
 * DATA_DIR/redis, append-only file, `maxmemory-policy noeviction` — and stop it on shutdown.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Config } from '../config/index.js';
import type { Logger } from './log.js';

export interface RedisLaunch {
  url: string;
  /** Set when this process started redis-server. */
  child: ChildProcess | null;
  stop(): Promise<void>;
}

/** True when something at `url` answers PING with +PONG (no auth) or -NOAUTH (it is a Redis). */
export function redisAnswers(url: string, timeoutMs = 1_000): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
  });
}

export async function ensureRedis(config: Config, log: Logger): Promise<RedisLaunch> {
  const none: RedisLaunch = { url: config.redisUrl, child: null, stop: async () => undefined };
  if (config.redisClusterNodes.length > 0 || (await redisAnswers(config.redisUrl))) return none;
  if (!config.redisUrlDefaulted) {
    log.warn('nothing answers at REDIS_URL yet; waiting for it (requests get 503 meanwhile)');
    return none;
  }
  const bin = config.redisServerBin;
  if (spawnSync(bin, ['--version'], { stdio: 'ignore' }).status !== 0) {
    log.warn(
      `no Redis at ${config.redisUrl} and ${bin} is not installed; install redis-server or set REDIS_URL`,
    );
    return none;
  }
  const u = new URL(config.redisUrl);
  const dir = path.join(config.dataDir, 'redis');
  await mkdir(dir, { recursive: true });
  const child = spawn(
    bin,
    [
      '--port',
      u.port || '6379',
      '--bind',
      u.hostname || '127.0.0.1',
      '--dir',
      dir,
      '--maxmemory-policy',
      'noeviction',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
    ],
    // A process group of its own: a terminal's Ctrl-C reaches the service, which stops Redis last (after
    // the workers have recorded what they were doing), not both at once.
    { stdio: ['ignore', 'ignore', 'inherit'], detached: true },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  while (!(await redisAnswers(config.redisUrl, 500))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      log.error('could not start redis-server', { dir });
      return none;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  log.info('started redis-server', { url: config.redisUrl, dir, pid: child.pid });
  return {
    url: config.redisUrl,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      log.info('stopped redis-server', { pid: child.pid });
    },
  };
}
