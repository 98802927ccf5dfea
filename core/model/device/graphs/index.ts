/**
 * Graphs for device-resident execution on a GPU provider. Where the CPU engine runs one graph per layer
 * and keeps the KV cache on the host, these graphs run a whole stack of layers in one call, take the
 * cache as device tensors and return the updated cache as device tensors, so only ids and positions go
 * up and only logits (or blend's per-token deviations) come back.
 *
 * They are built on onnxruntime's fused contrib kernels, which its WebGPU provider implements:
 * SimplifiedLayerNormalization (RMSNorm), RotaryEmbedding (from tables of every position, computed like
 * the host's), and GroupQueryAttention (flash attention where the adapter allows) for causal attention
 * after a cache. CacheBlend's selective layers, where chosen tokens anywhere in the prompt attend by
 * position over a mixed cache, use a decomposed attention with a position mask.
 *
 * Layouts carry a batch dimension B (1 except in batched precompute): ids [B, T]; hidden [B, T, D] in
 * fp32 (the residual stream stays fp32 in every precision; matrix products run in the compute precision);
 * caches [B, kvHeads, rows, headDim] (BNSH, GroupQueryAttention's layout) in the compute precision, where
 * row r holds the token at position r.
 */

export {
  devicePositions,
  intSegments,
  MAX_DEVICE_POSITIONS,
  type CacheMode,
  type DeviceDtype,
  type DeviceGraph,
  type DeviationMetric,
  type SelectiveAttention,
  type StackGraphOptions,
  type WeightInput,
} from './context.js';
export { buildStackGraph } from './stack.js';
export { buildDecodeBurstGraph, burstSegments } from './decode-burst.js';
export { buildDownloadGraph, buildSyncGraph } from './transfer.js';
export { buildAssembleGraph, type AssembleSpec, type HostKvForm } from './assemble.js';
