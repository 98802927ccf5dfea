import { stat } from 'node:fs/promises';

/** Whether a path exists (file or folder); any error reading it counts as no. */
export async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}
