/**
 * The formats linear-layer weights run in. `fp32` is exact against the references; `fp16` halves the bytes
 * (bf16 checkpoints are rounded to fp16 once, at load); `q4` is block-wise 4-bit (see quantize.ts), about
 * an eighth of fp32. Embeddings stay in the checkpoint's own precision in every format.
 */
export const WEIGHT_FORMATS = ['fp32', 'fp16', 'q4'] as const;
export type WeightFormat = (typeof WEIGHT_FORMATS)[number];

/** Bytes per weight of a linear layer in a format (q4: half a byte plus one fp16/fp32 scale per block). */
export function bytesPerWeight(format: WeightFormat, scaleBytes = 4): number {
  return format === 'fp32' ? 4 : format === 'fp16' ? 2 : 0.5 + scaleBytes / 32;
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
