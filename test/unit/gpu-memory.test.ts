/**
 * GPU_TIER_BYTES=auto (core/model/device/memory.ts): the tier takes what the card has free once the engine
 * holds its weights, less the run reserve and a margin; without nvidia-smi it falls back to 2 GiB.
 */
import { describe, expect, it } from 'vitest';
import { FALLBACK_GPU_TIER_BYTES, gpuTierBudget, runReserveBytes } from '../../core/model/device/memory.js';
import type { ModelConfig } from '../../core/model/types.js';

const GiB = 1024 ** 3;
/** Llama-3.1-8B's shape, the fields the reserve reads. */
const LLAMA_8B = {
  hiddenSize: 4096,
  intermediateSize: 14336,
  numHeads: 32,
  numLayers: 32,
  numKvHeads: 8,
  headDim: 128,
} as ModelConfig;

describe('the GPU tier sized to the card', () => {
  it('reserves a block of activations and a prompt cache per concurrent request', () => {
    const one = runReserveBytes(LLAMA_8B, { block: 4096, bytesPerValue: 2, concurrency: 1 });
    const four = runReserveBytes(LLAMA_8B, { block: 4096, bytesPerValue: 2, concurrency: 4 });
    // 8,192 tokens of fp16 K/V at 131,072 bytes a token: 1 GiB a request.
    expect(four - one).toBe(3 * 8192 * 2 * 32 * 8 * 128 * 2);
    expect(one / GiB).toBeGreaterThan(3);
    expect(one / GiB).toBeLessThan(5);
  });

  it('gives an 80 GB card holding 5 GB of weights tens of GiB, hundreds of thousands of 8B tokens', () => {
    const reserve = runReserveBytes(LLAMA_8B, { block: 4096, bytesPerValue: 2, concurrency: 1 });
    const { bytes } = gpuTierBudget({ totalBytes: 80 * GiB, usedBytes: 5.5 * GiB }, reserve);
    expect(bytes).toBe(Math.floor(80 * GiB - 5.5 * GiB - reserve - 8 * GiB));
    expect(bytes / (2 * 32 * 8 * 128 * 2)).toBeGreaterThan(400_000);
  });

  it('never goes below zero, and falls back to 2 GiB where the card is unknown', () => {
    expect(gpuTierBudget({ totalBytes: 16 * GiB, usedBytes: 15 * GiB }, GiB).bytes).toBe(0);
    expect(gpuTierBudget(null, GiB).bytes).toBe(FALLBACK_GPU_TIER_BYTES);
  });
});
