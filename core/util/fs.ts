import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** Whether a path exists (file or folder); any error reading it counts as no. */
export async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The project's root folder (where package.json and models/ are), from this module's location: the
 * TypeScript source (core/util) or its build (dist/core/util).
 */
export function projectRoot(): string {
  const up = import.meta.url.includes('/dist/core/util/') ? '../../../' : '../../';
  return fileURLToPath(new URL(up, import.meta.url));
}
