import {
  blendPrefill,
  memorySource,
  type BlendOptions,
  type ChunkCacheData,
  type ChunkKvSource,
} from '../core/blend/index.js';
import type { KvDtype } from '../core/kv/format.js';
import type { Engine } from '../core/model/engine.js';
import { startLoopbackS3 } from './s3-loopback.js';
import { storedChunks, type LoadBreakdown, type StoredChunks, type StoredTier } from './stored-chunks.js';

/**
 * bench:ttft's tier rows: one context (4×512 by default), full prefill beside blend with the chunk caches
 * in memory (fp32 arrays, nothing decoded), in the LRU, the disk tier, a file store and an S3 server on
 * loopback, each in fp16 and int8 objects. Every configuration runs once untimed, then the repetitions go
 * round-robin over the configurations (so other work on the machine disturbs them alike); medians. Each
 * stored tier also gets a load breakdown: every layer read and decoded with nothing else running.
 */
export interface TierRow {
  tier: 'memory' | StoredTier | null;
  kvDtype: KvDtype | null;
  mode: 'full' | 'blend';
  ttftMs: number;
  allMs: number[];
  ratioToFull: number;
  /** Blend: time the compute waited on cache loads (median run). */
  loadWaitMs: number | null;
  load: LoadBreakdown | null;
}

export const TIERS: StoredTier[] = ['lru', 'disk', 'file', 's3'];
export const TIER_KV_DTYPES: KvDtype[] = ['float16', 'int8'];

export async function measureTiers(
  engine: Engine,
  data: readonly ChunkCacheData[],
  question: number[],
  o: { ratio: number; reps: number },
): Promise<TierRow[]> {
  const s3 = await startLoopbackS3();
  const stored: StoredChunks[] = [];
  try {
    for (const kvDtype of TIER_KV_DTYPES) {
      for (const tier of TIERS)
        stored.push(await storedChunks(engine, data, { kvDtype, tier, s3Store: s3.store(kvDtype) }));
    }
    type Config = {
      row: Omit<TierRow, 'ttftMs' | 'allMs' | 'ratioToFull' | 'loadWaitMs'>;
      opts: BlendOptions;
    };
    type Timed = Config & { sources: () => Promise<ChunkKvSource[]>; runs: { ms: number; wait: number }[] };
    const blend: BlendOptions = { mode: 'blend', ratio: o.ratio };
    const inMemory = async () => data.map((c) => memorySource(c));
    const configs: Timed[] = [
      {
        row: { tier: null, kvDtype: null, mode: 'full', load: null },
        opts: { mode: 'full' },
        sources: inMemory,
        runs: [],
      },
      {
        row: { tier: 'memory', kvDtype: null, mode: 'blend', load: null },
        opts: blend,
        sources: inMemory,
        runs: [],
      },
      ...stored.map((s) => ({
        row: { tier: s.tier, kvDtype: s.kvDtype, mode: 'blend' as const, load: null },
        opts: blend,
        sources: () => s.open(),
        runs: [],
      })),
    ];
    const once = async (c: Timed) => {
      const t0 = performance.now();
      // Opening the stored objects (header reads) is part of the query's time.
      const { prefill } = await blendPrefill(engine, await c.sources(), question, c.opts);
      return { ms: performance.now() - t0, wait: prefill.timings.loadWaitMs };
    };
    for (const c of configs) await once(c);
    for (let r = 0; r < o.reps; r++) for (const c of configs) c.runs.push(await once(c));
    for (const [i, s] of stored.entries()) configs[i + 2].row.load = await s.loadBreakdown();
    const median = (c: Timed) => [...c.runs].sort((a, b) => a.ms - b.ms)[Math.floor(c.runs.length / 2)];
    const fullMs = median(configs[0]).ms;
    return configs.map((c) => {
      const m = median(c);
      return {
        ...c.row,
        ttftMs: m.ms,
        allMs: c.runs.map((x) => x.ms),
        ratioToFull: m.ms / fullMs,
        loadWaitMs: c.row.mode === 'blend' ? m.wait : null,
      };
    });
  } finally {
    for (const s of stored) await s.close();
    await s3.stop();
  }
}
