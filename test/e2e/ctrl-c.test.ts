/**
 * Ctrl-C on `npm start` as a terminal sends it: SIGINT to the whole process group, npm, the service and a
 * redis-server in that group alike (here one the test starts in the group, on a free port: the service's
 * own embedded one would need 127.0.0.1:6379, which other test runs may hold). The service must stop in a
 * few seconds and npm exit 0, even though its Redis went away at the same moment, or before. And the
 * embedded Redis the service starts itself runs in a process group of its own, so a terminal's Ctrl-C
 * reaches only the service, which stops it last.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config/index.js';
import { silentLogger } from '../../core/ops/log.js';
import { ensureRedis, redisAnswers } from '../../core/ops/redis-launcher.js';
import { freePort } from '../helpers/services.js';
import { trackChild } from '../helpers/child-processes.js';

const ROOT = new URL('../../', import.meta.url).pathname;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-ctrl-c-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The process group of a process (field 5 of /proc/<pid>/stat). */
async function processGroup(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

/** `npm start` and a redis-server of its own in a new process group (a terminal's foreground job), ready. */
async function startInGroup(name: string) {
  const home = path.join(dir, name);
  await mkdir(home);
  const [port, redisPort] = await Promise.all([freePort(), freePort()]);
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const log = path.join(home, 'service.log');
  const script = [
    `redis-server --port ${redisPort} --bind 127.0.0.1 --dir '${home}' --save '' --appendonly yes`,
    `--maxmemory-policy noeviction --daemonize no --loglevel warning >/dev/null &`,
    `exec npm start -- --port ${port} --data-dir '${home}' 2>>'${log}'`,
  ].join(' ');
  const child = spawn('bash', ['-c', script], {
    cwd: ROOT,
    detached: true, // a process group of its own, like a terminal's foreground job
    env: { ...process.env, REDIS_URL: redisUrl, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = trackChild(child);
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const deadline = Date.now() + 120_000;
  for (;;) {
    const r = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null);
    const started = await readFile(log, 'utf8').catch(() => '');
    if (
      r?.status === 200 &&
      /blend worker started/.test(started) &&
      /precompute worker started/.test(started)
    )
      break;
    if (Date.now() > deadline) throw new Error(`never ready: ${output}`);
    await new Promise((res) => setTimeout(res, 250));
  }
  /** Ctrl-C: SIGINT to the whole group; the service must stop within seconds, exit 0. */
  const ctrlC = async () => {
    const t0 = Date.now();
    process.kill(-child.pid!, 'SIGINT');
    const { code } = await exited;
    const took = Date.now() - t0;
    const text = await readFile(log, 'utf8');
    expect(code, text.slice(-2_000)).toBe(0);
    expect(took).toBeLessThan(5_000);
    expect(text).toContain('"msg":"closed the API and the workers"');
    expect(text).not.toContain('shutdown took too long');
    expect(text).not.toContain('second signal');
  };
  return { redisUrl, redisPort, ctrlC };
}

describe('Ctrl-C', () => {
  it('stops npm start and its Redis within seconds, exit 0', async () => {
    const service = await startInGroup('together');
    await service.ctrlC();
    expect(await redisAnswers(service.redisUrl)).toBe(false);
  }, 180_000);

  it('stops npm start within seconds when its Redis went away before, exit 0', async () => {
    // Redis gone first: closing the workers must not wait out their grace for a server that is not there.
    const service = await startInGroup('redis-gone');
    await promisify(execFile)('redis-cli', ['-p', String(service.redisPort), 'shutdown', 'nosave']).catch(
      () => undefined, // the connection closes as Redis exits
    );
    while (await redisAnswers(service.redisUrl)) await new Promise((res) => setTimeout(res, 50));
    await new Promise((res) => setTimeout(res, 1_000)); // the service's clients see it gone
    await service.ctrlC();
  }, 180_000);

  it('leaves the embedded redis-server out of the terminal’s process group, and stops it', async () => {
    const port = await freePort();
    // REDIS_URL unset is what starts the embedded Redis; the launcher is given a free port instead of 6379.
    const config = { ...loadConfig({ DATA_DIR: dir }), redisUrl: `redis://127.0.0.1:${port}` };
    const launched = await ensureRedis(config, silentLogger);
    try {
      expect(launched.child).not.toBeNull();
      expect(await processGroup(launched.child!.pid!)).not.toBe(await processGroup(process.pid));
      expect(await redisAnswers(config.redisUrl)).toBe(true);
    } finally {
      await launched.stop();
    }
    expect(await redisAnswers(config.redisUrl)).toBe(false);
  }, 30_000);
});
