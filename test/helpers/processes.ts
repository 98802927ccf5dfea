/**
 * Deployables as real child processes (`node --import tsx <entry>.ts`), so faults can be injected into
 * them the way an operator meets them: SIGKILL mid-job, a restart. Their JSON log lines are collected.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export interface ServiceProcess {
  pid: number;
  /** Parsed JSON log lines so far (stderr). */
  lines: Record<string, unknown>[];
  /** Resolves with the first log line whose `msg` matches. */
  waitForLog(msg: RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Start `entry` (a path from the repository root, e.g. `precompute/main.ts`) with `env`. */
export function spawnService(entry: string, env: Record<string, string>): ServiceProcess {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  delete childEnv.NODE_OPTIONS; // not the test runner's loaders
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => running.delete(child));
  const lines: Record<string, unknown>[] = [];
  const waiters: { re: RegExp; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buffered = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const raw = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        line = { msg: raw };
      }
      lines.push(line);
      for (const w of waiters.splice(0)) {
        if (w.re.test(String(line.msg))) w.resolve(line);
        else waiters.push(w);
      }
    }
  });
  return {
    pid: child.pid!,
    lines,
    waitForLog(re, timeoutMs = 60_000) {
      const seen = lines.find((l) => re.test(String(l.msg)));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `${entry}: no log line matching ${re} in ${timeoutMs} ms: ${JSON.stringify(lines.slice(-5))}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push({
          re,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        void exited.then(() => reject(new Error(`${entry} exited: ${JSON.stringify(lines.slice(-5))}`)));
      });
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}
