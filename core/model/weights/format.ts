/**
 * The formats linear-layer weights run in. `fp32` is exact against the references; `fp16` halves the bytes
 * (bf16 checkpoints are rounded to fp16 once, at load); `q4` is block-wise 4-bit (see quantize.ts), about
 * an eighth of fp32; `q8` block-wise 8-bit, about a quarter, with a rounding step 16 times finer. Embeddings stay in the checkpoint's own precision in every format.
 */
export const WEIGHT_FORMATS = ['fp32', 'fp16', 'q4', 'q8'] as const;
export type WeightFormat = (typeof WEIGHT_FORMATS)[number];

/** Bytes per weight of a linear layer in a format (q4, q8: half a byte or one, plus one scale per block). */
export function bytesPerWeight(format: WeightFormat, scaleBytes = 4): number {
  if (format === 'fp32' || format === 'fp16') return format === 'fp32' ? 4 : 2;
  return (format === 'q4' ? 0.5 : 1) + scaleBytes / 32;
}

/** The WEIGHTS setting: a format, or `auto` for the provider's default. */
export type WeightSetting = WeightFormat | 'auto';

/**
 * The format `auto` stands for. On the CPU, fp32: exact against the references, and measured no slower
 * than fp16 or q4 for prefill on onnxruntime 1.30's CPU kernels (q4 pays off in decoding and memory;
 * see docs/benchmarks.md). On the device, the compute precision's own (fp16 by default).
 */
export function resolveWeightFormat(
  setting: WeightSetting,
  provider: string,
  deviceDtype: 'float16' | 'float32' = 'float32',
): WeightFormat {
  if (setting !== 'auto') return setting;
  if (provider === 'webgpu') return deviceDtype === 'float16' ? 'fp16' : 'fp32';
  return 'fp32';
}
