/**
 * Prometheus metrics, one registry per process. The API records request latencies; each worker records
 * what its jobs did (latency, TTFT, cache tiers, bytes, recompute ratio). `npm start` runs everything in
 * one process, so GET /metrics on the API shows all of it; a worker started alone serves its own registry
 * on METRICS_PORT when set.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CacheTier } from '../cache/types.js';
import type { BlendJobResult } from '../queue/contracts.js';

const SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

function build() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'cacheblend_process_' });
  const m = {
    registry,
    httpDuration: new Histogram({
      name: 'cacheblend_http_request_duration_seconds',
      help: 'HTTP request latency by method, route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: SECONDS,
      registers: [registry],
    }),
    jobDuration: new Histogram({
      name: 'cacheblend_job_duration_seconds',
      help: 'Job processing time in a worker, by queue and outcome',
      labelNames: ['queue', 'outcome'],
      buckets: SECONDS,
      registers: [registry],
    }),
    jobQueueWait: new Histogram({
      name: 'cacheblend_job_queue_wait_seconds',
      help: 'Time a job waited in its queue before a worker took it',
      labelNames: ['queue'],
      buckets: SECONDS,
      registers: [registry],
    }),
    ttft: new Histogram({
      name: 'cacheblend_query_ttft_seconds',
      help: 'Time to first token of blend jobs (cache loading included), by mode',
      labelNames: ['mode'],
      buckets: SECONDS,
      registers: [registry],
    }),
    cacheHits: new Counter({
      name: 'cacheblend_chunk_cache_hits_total',
      help: 'Chunk caches found, by tier (lru, disk, store)',
      labelNames: ['tier'],
      registers: [registry],
    }),
    cacheMisses: new Counter({
      name: 'cacheblend_chunk_cache_misses_total',
      help: 'Chunk caches missing or unusable at query time (computed on the spot)',
      registers: [registry],
    }),
    cacheCorrupt: new Counter({
      name: 'cacheblend_chunk_cache_corrupt_total',
      help: 'Chunk caches found corrupt or truncated in a tier (replaced from the store, or recomputed: a miss)',
      registers: [registry],
    }),
    bytesLoaded: new Counter({
      name: 'cacheblend_kv_bytes_loaded_total',
      help: 'KV bytes read while answering queries, by tier',
      labelNames: ['tier'],
      registers: [registry],
    }),
    recomputeRatio: new Histogram({
      name: 'cacheblend_recompute_ratio',
      help: 'Fraction of context tokens recomputed per query (blend: the selected tokens; full: 1)',
      labelNames: ['mode'],
      buckets: [0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1],
      registers: [registry],
    }),
    precomputed: new Counter({
      name: 'cacheblend_precompute_chunks_total',
      help: 'Precompute jobs by result (computed, existing, skipped)',
      labelNames: ['result'],
      registers: [registry],
    }),
    bytesWritten: new Counter({
      name: 'cacheblend_precompute_bytes_written_total',
      help: 'KV bytes written to the object store by precompute jobs',
      registers: [registry],
    }),
  };
  return m;
}

export type Metrics = ReturnType<typeof build>;

let instance: Metrics | undefined;

export function metrics(): Metrics {
  instance ??= build();
  return instance;
}

/** Record a finished blend job's numbers. */
export function observeBlend(result: BlendJobResult): void {
  const m = metrics();
  m.ttft.observe({ mode: result.mode }, result.ttftMs / 1000);
  for (const tier of ['gpu', 'lru', 'disk', 'store'] as CacheTier[]) {
    if (result.cache.hits[tier]) m.cacheHits.inc({ tier }, result.cache.hits[tier]);
    if (result.cache.bytesLoaded[tier]) m.bytesLoaded.inc({ tier }, result.cache.bytesLoaded[tier]);
  }
  if (result.cache.misses) m.cacheMisses.inc(result.cache.misses);
  if (result.cache.corrupt) m.cacheCorrupt.inc(result.cache.corrupt);
  if (result.contextTokens > 0) {
    m.recomputeRatio.observe({ mode: result.mode }, result.recomputedTokens / result.contextTokens);
  }
}
