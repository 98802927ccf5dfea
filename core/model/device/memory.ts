import { execFileSync } from 'node:child_process';
import type { ModelConfig } from '../types.js';

/**
 * Sizing the GPU tier to the card: what nvidia-smi reports free once the engine holds its weights and
 * sessions, less a reserve for what requests allocate as they run (see gpuTierBudget).
 */
export interface CardMemory {
  totalBytes: number;
  usedBytes: number;
}

const MiB = 2 ** 20;

/** The card's memory as nvidia-smi reports it (`index`: GPU_INDEX, else the first); null without it. */
export function cardMemory(index: number | null = null): CardMemory | null {
  try {
    const out = execFileSync(
      'nvidia-smi',
      ['--query-gpu=memory.total,memory.used', '--format=csv,noheader,nounits', `--id=${index ?? 0}`],
      { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const [total, used] = out
      .trim()
      .split('\n')[0]
      .split(',')
      .map((x) => Number(x.trim()));
    if (!Number.isFinite(total) || !Number.isFinite(used) || total <= 0) return null;
    return { totalBytes: total * MiB, usedBytes: used * MiB };
  } catch {
    return null;
  }
}

/** The tier's size when the card's memory is unknown. */
export const FALLBACK_GPU_TIER_BYTES = 2 * 1024 ** 3;

/** Tokens of the longest prompt cache each concurrent request is assumed to hold besides the tier. */
export const RESERVED_PROMPT_TOKENS = 8192;

/**
 * Bytes a device-resident engine allocates while it runs, beyond its weights: one prefill block's
 * activations (the fp32 residual stream and norms, the MLP's intermediate in the compute precision,
 * attention scores over the block when decomposed) and each concurrent request's prompt cache.
 */
export function runReserveBytes(
  cfg: ModelConfig,
  o: { block: number; bytesPerValue: number; concurrency: number },
): number {
  const { hiddenSize: D, intermediateSize: I, numHeads: H, numLayers: L, numKvHeads: KV, headDim: hd } = cfg;
  const activations = o.block * (6 * D * 4 + 3 * I * o.bytesPerValue) + H * o.block * o.block * 4;
  const promptCache = 2 * L * KV * hd * o.bytesPerValue * RESERVED_PROMPT_TOKENS;
  return activations + o.concurrency * promptCache;
}

/**
 * GPU_TIER_BYTES=auto: the card's free memory after the engine started, less the run reserve and a
 * margin (10% of the card, at least 2 GiB) for the provider's own buffers and fragmentation.
 */
export function gpuTierBudget(mem: CardMemory | null, reserve: number): { bytes: number; why: string } {
  if (!mem) return { bytes: FALLBACK_GPU_TIER_BYTES, why: 'card memory unknown (no nvidia-smi): 2 GiB' };
  const margin = Math.max(2 * 1024 ** 3, 0.1 * mem.totalBytes);
  const bytes = Math.max(0, Math.floor(mem.totalBytes - mem.usedBytes - reserve - margin));
  const gib = (b: number) => `${(b / 1024 ** 3).toFixed(1)} GiB`;
  return {
    bytes,
    why: `card ${gib(mem.totalBytes)}, in use ${gib(mem.usedBytes)}, run reserve ${gib(reserve)}, margin ${gib(margin)}`,
  };
}
