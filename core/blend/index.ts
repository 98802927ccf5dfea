/**
 * CacheBlend's public interface: prefill in any mode over chunk cache sources, the chunk caches
 * themselves, the loading controller and the fidelity measurement. Implementation files are internal.
 */
export {
  blendPrefill,
  validateBlendOptions,
  DEFAULT_CHECK_LAYER,
  checkLayerFor,
  DEFAULT_RATIO,
  DEFAULT_SELECTION,
  defaultSelection,
  DEFAULT_ATTENTION,
  MAX_SINK_TOKENS,
} from './blend.js';
export {
  memorySource,
  precomputeChunk,
  precomputeChunks,
  asFloat32,
  tokenIdsOnly,
  type ChunkCacheData,
} from './chunks.js';
export { controllerRatio, CostModel } from './controller.js';
export { klDivergence, measureFidelity, selectionName, softmax, type FidelityRow } from './fidelity.js';
export {
  attentionRequest,
  deviations,
  FUSION_K,
  needsAttention,
  rankFusion,
  questionAttention,
  selectContext,
  selectionBudget,
  sinkIndices,
  topK,
  type CheckScores,
} from './selection.js';
export * from './types.js';
