/**
 * `ratio: "auto"` for the accuracy benchmark, decided as a blend worker decides it: the loading
 * controller's r = max(r_load, r_min) from a CostModel fed by real measurements — layer reads of the
 * questions' stored fp16 chunk objects from a file store (through the worker's own tiered loader) and the
 * engine's layer runs of 8 or more tokens (as core/inference/engine-context.ts filters them).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CostModel, DEFAULT_RATIO, type BlendOptions } from '../blend/index.js';
import { TieredChunkLoader } from '../cache/tiered-loader.js';
import { emptyCacheStats } from '../cache/types.js';
import { computeChunkObject } from '../inference/chunk-objects.js';
import { chunkKey, chunkObjectKey } from '../kv/format.js';
import type { Engine } from '../model/engine.js';
import { FileObjectStore } from '../storage/file.js';
import type { PreparedQuestion } from './qa.js';

export interface AutoRatio {
  /** Blend options for one question (the controller's inputs at the time it is asked). */
  options(p: PreparedQuestion): BlendOptions;
  /** Stop observing the engine. */
  close(): void;
}

/** Store every distinct chunk of `prepared` in a file store and read all its layers once, measuring loads. */
async function measureLoads(engine: Engine, prepared: readonly PreparedQuestion[], cost: CostModel) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-auto-'));
  const store = new FileObjectStore(dir);
  const { fingerprint } = engine.model;
  const { numLayers, numKvHeads, headDim } = engine.config;
  const loader = new TieredChunkLoader({
    store,
    disk: null,
    lruBytes: 0,
    fingerprint,
    numLayers,
    kvHeads: numKvHeads,
    headDim,
    kvDtype: 'float16',
    compute: (ids) => computeChunkObject(engine, ids, 'float16'),
    onLayerLoad: (bytes, ms) => cost.observeLoad(bytes, ms),
  });
  try {
    const seen = new Set<string>();
    for (const p of prepared) {
      for (const s of p.sources) {
        const key = chunkKey(fingerprint, s.tokenIds);
        if (seen.has(key)) continue;
        seen.add(key);
        await store.put(
          chunkObjectKey(fingerprint, key),
          await computeChunkObject(engine, s.tokenIds, 'float16'),
        );
        const opened = await loader.open(key, s.tokenIds, emptyCacheStats());
        for (let l = 0; l < numLayers; l++) await opened.layer(l);
      }
    }
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export async function autoRatio(
  engine: Engine,
  prepared: readonly PreparedQuestion[],
  minRatio = DEFAULT_RATIO,
): Promise<AutoRatio> {
  const cost = new CostModel();
  const previous = engine.layerObserver;
  engine.layerObserver = (tokens, ms) => {
    if (tokens >= 8) cost.observeLayer(tokens, ms);
    previous?.(tokens, ms);
  };
  await measureLoads(engine, prepared, cost);
  const { numKvHeads, headDim } = engine.config;
  return {
    options(p) {
      const tokens = p.sources.reduce((a, s) => a + s.tokenIds.length, 0);
      const estimate = cost.estimate(tokens * numKvHeads * headDim * 2 * 2); // one fp16 layer, K and V
      return estimate
        ? { mode: 'blend', controller: { minRatio, ...estimate } }
        : { mode: 'blend', ratio: minRatio };
    },
    close() {
      engine.layerObserver = previous;
    },
  };
}
