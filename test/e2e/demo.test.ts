/**
 * `npm run demo` as a newcomer runs it: through npm, in a process group of its own, as a terminal starts
 * it, stopped with Ctrl-C (SIGINT to the whole group, which npm passes on once more). It must answer, then exit 0 with the service shut down cleanly;
 * on a port another process holds it must refuse at once, saying so. (The Redis here is the test's: the
 * demo's own embedded one would need 127.0.0.1:6379, which other test runs on this machine may hold.)
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedis, type RedisHandle } from '../helpers/services.js';

const ROOT = new URL('../../', import.meta.url).pathname;

let redis: RedisHandle;
let dataDir: string;

beforeAll(async () => {
  redis = await startRedis();
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-demo-'));
});

afterAll(async () => {
  await redis?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

/** Run the demo; once `until` shows in its output (or at once), Ctrl-C it; resolve with its exit. */
function runDemo(port: number, until: string | null): Promise<{ code: number | null; output: string }> {
  const child = spawn('npm', ['run', 'demo'], {
    cwd: ROOT,
    detached: true, // a process group of its own, like a terminal's foreground job
    env: { ...process.env, PORT: String(port), DATA_DIR: dataDir, REDIS_URL: redis.url, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let interrupted = false;
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    if (until !== null && !interrupted && output.includes(until)) {
      interrupted = true;
      process.kill(-child.pid!, 'SIGINT');
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

describe('npm run demo', () => {
  it('answers, and on Ctrl-C closes the workers and exits 0', async () => {
    const port = await freePort();
    const { code, output } = await runDemo(port, 'keeps running');
    expect(output).toContain('"mode":"blend"');
    expect(output).toContain('"mode":"full"');
    expect(output).toContain('no faster than full');
    expect(output).toContain('demo: stopped cleanly');
    expect(code).toBe(0);
    const log = await readFile(path.join(dataDir, 'service.log'), 'utf8');
    expect(log).toContain('"msg":"closed the API and the workers"');
    expect(log).not.toContain('second signal');
    const probe = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
    expect(probe).toBeNull(); // the service is gone
  }, 180_000);

  it('refuses a port another process holds, before starting anything', async () => {
    const other = net.createServer().listen(0, '127.0.0.1');
    await new Promise((done) => other.once('listening', done));
    try {
      const { port } = other.address() as net.AddressInfo;
      const { code, output } = await runDemo(port, null);
      expect(code).toBe(1);
      expect(output).toContain(
        `demo: port ${port} is taken: another process is listening on 127.0.0.1:${port}`,
      );
      expect(output).not.toContain('waiting for');
    } finally {
      other.close();
    }
  }, 30_000);
});
