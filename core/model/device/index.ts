/**
 * Device-resident execution on the WebGPU provider (the only GPU provider whose device tensors the Node
 * binding hands to JavaScript). Hidden states and KV caches live in GPU buffers between runs: a run's
 * device outputs (`preferredOutputLocation: 'gpu-buffer'`) are fed back as the next run's inputs, and
 * only logits and blend's deviations are returned on the host. Each tensor is released with `dispose()`
 * as soon as nothing reads it, so GPU memory does not wait for the JavaScript garbage collector.
 *
 * Cache row r holds the token at position r (prompts are always laid out from position 0), which lets
 * the graphs build their masks from positions alone.
 */

export { DeviceChunk, DeviceKvCache, type DeviceLayers, type HostRows, type HostValues } from './cache.js';
export { chooseAttention } from './attention-check.js';
export type { DeviationMetric } from './graphs/index.js';
export { DeviceRunner } from './runner.js';
export { int64, range, selectiveInts, type Feeds, type Ints } from './ints.js';
export { buildAssembleGraph, type AssembleSpec } from './graphs/index.js';
