import { stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
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

/**
 * The Hugging Face Hub cache folder as huggingface_hub finds it: HF_HUB_CACHE, else HF_HOME/hub, else
 * ~/.cache/huggingface/hub (core/model/hub.ts reads and writes it).
 */
export function hfHubCache(env: { HF_HUB_CACHE?: string; HF_HOME?: string } = process.env): string {
  if (env.HF_HUB_CACHE) return path.resolve(env.HF_HUB_CACHE);
  return path.join(path.resolve(env.HF_HOME || path.join(os.homedir(), '.cache', 'huggingface')), 'hub');
}
