/** What an inference thread holds for its life (the model, the engine, the chunk loader), and how it opens them. */
import type { DeviceDtype, KvDtype, ModelSourceSettings, S3Settings } from '../config/index.js';
import type * as ort from 'onnxruntime-node';
import { CostModel } from '../blend/index.js';
import { Engine, type ExecutionProvider } from '../model/engine.js';
import { loadModel } from '../model/load.js';
import { resolveWeightFormat, type WeightSetting } from '../model/weights/format.js';
import type { BlendJobResult } from '../queue/contracts.js';
import { openObjectStore } from '../storage/index.js';
import { DiskTier } from '../cache/disk-tier.js';
import type { ObjectStore } from '../storage/types.js';
import { DeviceChunkTier } from '../cache/device-tier.js';
import { cardMemory, gpuTierBudget, runReserveBytes } from '../model/device/memory.js';
import { TieredChunkLoader } from '../cache/tiered-loader.js';
import { createLogger, type LogLevel, type Logger } from '../ops/log.js';
import { computeChunkObject } from './chunk-objects.js';
import { ChunkWriteGate, type ChunkWriteSettings } from '../documents/chunk-writes.js';

export interface EngineThreadInit {
  model: string;
  modelSource: ModelSourceSettings;
  executionProvider: ExecutionProvider;
  /**
   * GPU_INDEX (null/absent: the provider's default GPU). The main thread points the process at it before
   * this thread starts (core/runtime/gpus.ts); the CUDA provider also takes it as its deviceId here.
   */
  gpuIndex?: number | null;
  /** onnxruntime intra-op threads (0: onnxruntime decides). */
  threads: number;
  kvStoreUrl: string;
  s3: S3Settings;
  /** Disk cache directory; null disables the tier. */
  diskCacheDir: string | null;
  /** Bound of the disk tier in bytes (0 disables it). */
  diskCacheBytes: number;
  lruBytes: number;
  /** Blend jobs this worker runs at once (each holds a prompt cache on the device). */
  blendConcurrency?: number;
  /** GPU tier bytes (device-resident engines only; 0 or absent: off; `auto`: sized to the card). */
  gpuTierBytes?: number | 'auto';
  /** Device precision (device-resident engines only; default float32). */
  deviceDtype?: DeviceDtype;
  /** Greedy tokens per device run (device-resident engines only; default 8). */
  deviceDecodeBurst?: number;
  /** Linear layers' weight format (WEIGHTS; `auto` or absent: the provider's default). */
  weights?: WeightSetting;
  kvDtype: KvDtype;
  /** r_min of `ratio: "auto"` (BLEND_MIN_RATIO; default 0.15). */
  minRatio?: number;
  /** CALIBRATION_GATE: `full` serves a flagged model's blend requests in full mode (default report). */
  calibrationGate?: 'report' | 'full';
  logLevel: LogLevel;
  /**
   * The documents' Redis: computed chunks are written to the store only under their lock while a
   * document references them (core/documents/chunk-writes.ts). Null or absent: written unconditionally
   * (tools and tests without Redis).
   */
  chunkWrites?: ChunkWriteSettings | null;
}

export interface EngineInfo {
  fingerprint: string;
  source: string;
  numLayers: number;
  kvHeads: number;
  headDim: number;
  maxPositions: number;
  /** The engine computes several chunks in one run (device-resident): worth batching precompute jobs. */
  batchesChunks: boolean;
}

/** What the thread returns for a blend job; the worker adds queueMs and workerMs. */
export type BlendThreadResult = Omit<BlendJobResult, 'timings'> & {
  timings: Omit<BlendJobResult['timings'], 'queueMs' | 'workerMs'>;
};

/** What the handlers hold for the thread's life. */
export interface EngineContext {
  init: EngineThreadInit;
  engine: Engine;
  store: ObjectStore;
  disk: DiskTier | null;
  loader: TieredChunkLoader;
  /** Writes computed chunks to the store under their locks, only while a document references them. */
  chunkWrites: ChunkWriteGate | null;
  /** Load and layer speeds observed on this thread, for `ratio: "auto"`. */
  cost: CostModel;
  log: Logger;
}

/** The CUDA provider's own device choice (WebGPU's is made for the whole process: core/runtime/gpus.ts). */
/**
 * A device-resident engine's GPU tier: GPU_TIER_BYTES, or (auto) what the card has free once the engine
 * holds its weights and sessions, less a reserve for runs (core/model/device/memory.ts). Null: no tier.
 */
function deviceTier(engine: Engine, init: EngineThreadInit, log: Logger): DeviceChunkTier | null {
  if (!engine.device || !init.gpuTierBytes) return null;
  if (init.gpuTierBytes !== 'auto') return new DeviceChunkTier(init.gpuTierBytes);
  const reserve = runReserveBytes(engine.config, {
    block: engine.device.block,
    bytesPerValue: engine.device.bytesPerValue,
    concurrency: init.blendConcurrency ?? 1,
  });
  const { bytes, why } = gpuTierBudget(cardMemory(init.gpuIndex ?? null), reserve);
  log.info(`GPU tier sized to the card: ${(bytes / 1024 ** 3).toFixed(1)} GiB (${why})`);
  return bytes > 0 ? new DeviceChunkTier(bytes) : null;
}

function cudaDevice(init: EngineThreadInit): { sessionOptions?: ort.InferenceSession.SessionOptions } {
  if (init.executionProvider !== 'cuda' || init.gpuIndex == null) return {};
  return { sessionOptions: { executionProviders: [{ name: 'cuda', deviceId: init.gpuIndex }] } };
}

export async function openEngine(init: EngineThreadInit): Promise<EngineContext> {
  const log = createLogger(init.logLevel, 'engine');
  const model = await loadModel(init.model, init.modelSource);
  const engine = await Engine.create(model, {
    executionProvider: init.executionProvider,
    threads: init.threads,
    deviceDtype: init.deviceDtype,
    deviceDecodeBurst: init.deviceDecodeBurst,
    weights: resolveWeightFormat(init.weights ?? 'auto', init.executionProvider, init.deviceDtype),
    ...cudaDevice(init),
  });
  const cfg = model.config;
  const cost = new CostModel();
  // Decoding steps (one token) are dominated by per-call overhead: they would skew the per-token cost.
  engine.layerObserver = (tokens, ms) => {
    if (tokens >= 8) cost.observeLayer(tokens, ms);
  };
  const store = openObjectStore(init.kvStoreUrl, { s3: init.s3 });
  const disk =
    init.diskCacheDir && init.diskCacheBytes > 0
      ? new DiskTier(init.diskCacheDir, init.diskCacheBytes, log)
      : null;
  const chunkWrites = init.chunkWrites ? new ChunkWriteGate(init.chunkWrites, log) : null;
  const loader = new TieredChunkLoader({
    store,
    disk,
    lruBytes: init.lruBytes,
    fingerprint: engine.kvFingerprint,
    numLayers: cfg.numLayers,
    kvHeads: cfg.numKvHeads,
    headDim: cfg.headDim,
    kvDtype: init.kvDtype,
    compute: (ids) => computeChunkObject(engine, ids, init.kvDtype),
    onLayerLoad: (bytes, ms, tier) => cost.observeLoad(bytes, ms, tier),
    log,
    deviceTier: deviceTier(engine, init, log),
    ...(chunkWrites && {
      writeToStore: (key, objKey, buf) => chunkWrites.write(store, key, objKey, buf),
    }),
  });
  return { init, engine, store, disk, loader, chunkWrites, cost, log };
}
