import type { ChildProcess } from 'node:child_process';

/** Child processes still running; killed when the test process exits, so no server outlives its test. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** Register a spawned server; resolves when it exits (or fails to start), with its exit code. */
export function trackChild(child: ChildProcess): Promise<{ code: number | null; error?: Error }> {
  children.add(child);
  const exited = new Promise<{ code: number | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, error }));
    child.once('exit', (code) => resolve({ code }));
  });
  void exited.then(() => children.delete(child));
  return exited;
}
