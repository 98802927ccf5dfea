import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  blendPrefill,
  type BlendOptions,
  type ChunkCacheData,
  type ChunkKvSource,
} from '../core/blend/index.js';
import { DeviceChunkTier } from '../core/cache/device-tier.js';
import { TieredChunkLoader } from '../core/cache/tiered-loader.js';
import { emptyCacheStats } from '../core/cache/types.js';
import { chunkKey, chunkObjectKey, encodeChunkKv, type KvDtype } from '../core/kv/format.js';
import { releaseCache, type Engine } from '../core/model/engine.js';
import { FileObjectStore, type ObjectStore } from '../core/storage/index.js';
import { median } from './common.js';
import { startLoopbackS3, type LoopbackS3 } from './s3-loopback.js';

/**
 * Blend's time to first token on the device with the chunk caches in each tier the blend worker reads
 * (bench:gpu's scale run): the GPU tier, host RAM (the LRU of whole objects), the disk tier (a local
 * file store, warm in the page cache) and an S3 server on loopback (s3rver in a child process), opened
 * through the worker's own loader. Each row: the TTFT median and the load breakdown of the median run —
 * time waiting for stored layers (`readMs`: reads, checksums), time in upload and assembly runs
 * (`uploadMs`: the host's copies into the provider's staging buffers), bytes uploaded and their rate.
 */
export type Tier = 'gpu' | 'ram' | 'disk' | 's3';
export const TIERS: readonly Tier[] = ['gpu', 'ram', 'disk', 's3'];

export interface TierRow {
  blendMs: number;
  loadMs: number;
  uploadMs: number;
  uploadGBps: number | null;
  uploadedMB: number;
  kvDtype: KvDtype;
  steps: Record<string, number>;
}

/** The stores of one tier run: objects put where that tier reads them. */
async function tierStores(tier: Tier, dir: string, s3: LoopbackS3 | null, dtype: KvDtype) {
  const files = new FileObjectStore(join(dir, 'files'));
  const empty = new FileObjectStore(join(dir, 'empty'));
  if (tier === 'disk') return { store: empty, disk: files, put: files };
  if (tier === 's3') {
    // A prefix per dtype: objects of two dtypes for one chunk share a key.
    const store = s3!.store(`tiers-${dtype}`);
    return { store, disk: null, put: store };
  }
  return { store: files, disk: null, put: files };
}

/** TTFT of blend over the workload's chunks read from `tier`, objects stored as `kvDtype`. */
export async function tierTtft(
  engine: Engine,
  data: readonly ChunkCacheData[],
  question: readonly number[],
  tier: Tier,
  kvDtype: KvDtype,
  reps: number,
  s3: LoopbackS3 | null,
): Promise<TierRow> {
  const { fingerprint, config } = engine.model;
  const { numKvHeads: kvHeads, headDim, numLayers } = config;
  const dir = mkdtempSync(join(tmpdir(), `cacheblend-tier-${tier}-`));
  const { store, disk, put } = await tierStores(tier, dir, s3, kvDtype);
  const keys: string[] = [];
  for (const d of data) {
    const key = chunkKey(fingerprint, d.tokenIds);
    const obj = encodeChunkKv({ ...d, fingerprint, kvHeads, headDim }, kvDtype);
    await (put as ObjectStore).put(chunkObjectKey(fingerprint, key), obj);
    keys.push(key);
  }
  const gpu = tier === 'gpu' ? new DeviceChunkTier(64 * 1024 ** 3) : null;
  const loader = new TieredChunkLoader({
    store,
    disk,
    lruBytes: tier === 'ram' || tier === 'gpu' ? 16 * 1024 ** 3 : 0,
    fingerprint,
    numLayers,
    kvHeads,
    headDim,
    kvDtype,
    deviceTier: gpu,
    compute: () => Promise.reject(new Error('the benchmark stores every chunk beforehand')),
  });
  const open = async (): Promise<ChunkKvSource[]> => {
    const stats = emptyCacheStats();
    const opened = await Promise.all(keys.map((k, i) => loader.open(k, data[i].tokenIds, stats)));
    if (stats.misses || stats.corrupt) throw new Error(`tier ${tier}: a stored chunk was not usable`);
    return opened;
  };
  const o: BlendOptions = { mode: 'blend', ratio: 0.15, selection: 'deviation' };
  const once = async () => {
    const t0 = performance.now();
    const { cache, prefill } = await blendPrefill(engine, await open(), question, o);
    const ms = performance.now() - t0;
    releaseCache(cache);
    return { ms, prefill };
  };
  // Warm-up: sessions and shaders; and for the RAM and GPU tiers, the first read fills them.
  for (let i = 0; i < 2; i++) {
    const opened = await open();
    const { cache } = await blendPrefill(engine, opened, question, o);
    releaseCache(cache);
    await Promise.all(opened.map((c) => (c as { complete?: () => Promise<void> }).complete?.()));
    await new Promise((r) => setTimeout(r, 100)); // a GPU tier's lower layers follow the answer
  }
  const runs = [];
  for (let i = 0; i < reps; i++) runs.push(await once());
  runs.sort((a, b) => a.ms - b.ms);
  const mid = runs[Math.floor(runs.length / 2)];
  gpu?.clear();
  rmSync(dir, { recursive: true, force: true });
  const steps = mid.prefill.timings.steps ?? {};
  const uploadMs = steps['upload+assemble'] ?? 0;
  const bytes = mid.prefill.timings.uploadedBytes ?? 0;
  return {
    blendMs: median(runs.map((r) => r.ms)),
    loadMs: steps.read ?? 0,
    uploadMs,
    uploadGBps: bytes > 0 && uploadMs > 0 ? bytes / uploadMs / 1e6 : null,
    uploadedMB: bytes / 1e6,
    kvDtype,
    steps,
  };
}

/** Every tier for each KV dtype, with one S3 server for the run. */
export async function tierTtfts(
  engine: Engine,
  data: readonly ChunkCacheData[],
  question: readonly number[],
  dtypes: readonly KvDtype[],
  reps: number,
): Promise<Record<string, Record<Tier, TierRow>>> {
  const s3 = await startLoopbackS3();
  const out: Record<string, Record<Tier, TierRow>> = {};
  try {
    for (const dtype of dtypes) {
      const rows = {} as Record<Tier, TierRow>;
      for (const tier of TIERS) {
        rows[tier] = await tierTtft(engine, data, question, tier, dtype, reps, s3);
        console.error(`    ${dtype} ${tier}: ${JSON.stringify(rows[tier])}`);
      }
      out[dtype] = rows;
    }
  } finally {
    await s3.stop();
  }
  return out;
}
