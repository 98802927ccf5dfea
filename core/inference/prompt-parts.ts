import type { ChunkKvSource } from '../blend/index.js';

/** What a prompt is built from: the template prefix's cache, the chunks' caches, the suffix's ids. */
export interface PromptParts {
  prefix: ChunkKvSource | null;
  chunks: readonly ChunkKvSource[];
  suffixIds: readonly number[];
}

/** BOS + the prefix's ids + every chunk's ids + the suffix's ids: the prompt every mode builds. */
export function promptIds(bos: number, parts: PromptParts): number[] {
  return [
    bos,
    ...(parts.prefix?.tokenIds ?? []),
    ...parts.chunks.flatMap((c) => c.tokenIds),
    ...parts.suffixIds,
  ];
}

/** Tokens of the prompt `parts` make: BOS + prefix + chunks + suffix. */
export function promptLength(prefix: number, chunks: readonly { length: number }[], suffix: number): number {
  return 1 + prefix + chunks.reduce((a, c) => a + c.length, 0) + suffix;
}
