import { execFileSync } from 'node:child_process';

/** The GPU's name as nvidia-smi reports it. */
export function card(): string {
  try {
    return execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { encoding: 'utf8' })
      .split('\n')[0]
      .trim();
  } catch {
    return 'unknown (no nvidia-smi)';
  }
}
