/**
 * One entry point for every model format: resolve a name or path to a folder, then load it with the loader
 * its files call for (Hugging Face: config.json; llama2.c: a *.bin checkpoint and a tok*.bin tokenizer).
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { ModelLoadError } from '../errors.js';
import { loadHfModel, type HfLoadOptions } from './loaders/hf.js';
import { findLlama2cFiles, loadLlama2cModel } from './loaders/llama2c.js';
import { resolveModelPath, type ResolveOptions } from './resolve.js';
import type { LoadedModel } from './types.js';

export type ModelFormat = 'hf' | 'llama2c';

/** Which loader a folder needs, or null if it holds neither format. */
export async function detectModelFormat(dir: string): Promise<ModelFormat | null> {
  try {
    if ((await stat(path.join(dir, 'config.json'))).isFile()) return 'hf';
  } catch {
    // not a Hugging Face folder
  }
  return (await findLlama2cFiles(dir)) ? 'llama2c' : null;
}

export async function loadModel(
  nameOrPath: string,
  opts: ResolveOptions & HfLoadOptions = {},
): Promise<LoadedModel> {
  const dir = await resolveModelPath(nameOrPath, opts);
  if (!(await stat(dir)).isDirectory()) {
    throw new ModelLoadError(`${dir}: expected a model folder, not a file`);
  }
  switch (await detectModelFormat(dir)) {
    case 'hf':
      return loadHfModel(dir, opts);
    case 'llama2c':
      return loadLlama2cModel(dir);
    default:
      throw new ModelLoadError(
        `${dir}: neither a Hugging Face model folder (config.json) nor a llama2.c one (*.bin checkpoint + tok*.bin)`,
      );
  }
}
