/**
 * Serving metrics under vLLM's names, with this project's prefix (`cacheblend:` where vLLM says `vllm:`),
 * so dashboards built for vLLM chart this service by changing the prefix. They are recorded by the API
 * process that answered the request (from the finished job's result), so GET /metrics on the API shows
 * them whether the workers run inside it or as processes of their own. Queries enqueued with `?async=1`
 * are not waited for by the API and are counted only by the worker's own series.
 *
 *   cacheblend:num_requests_running / :num_requests_waiting   blend jobs active / waiting (queue-wide)
 *   cacheblend:prompt_tokens_total, :generation_tokens_total  tokens of answered requests
 *   cacheblend:prefix_cache_queries_total / :prefix_cache_hits_total   prompt tokens / of them read from
 *                                                             a stored cache (hit rate = hits / queries)
 *   cacheblend:time_to_first_token_seconds{mode}              queue wait + worker time to the first token
 *   cacheblend:e2e_request_latency_seconds{mode}              enqueue → result
 *   cacheblend:request_success_total{finished_reason}
 *   cacheblend:cost_plan_total{chose}                        blend requests the cost plan ran in full
 *                                                             (chose="full": loading would have lost)
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import type { BlendJobResult } from '../queue/contracts.js';
import { metrics } from './metrics.js';

const LATENCY = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80];

/** Blend jobs active and waiting, read from the queue when /metrics is scraped. */
export type QueueCounts = () => Promise<{ active: number; waiting: number }>;

let queueCounts: QueueCounts | null = null;

function build() {
  const registers = [metrics().registry];
  const gauge = (name: string, help: string, key: 'active' | 'waiting') =>
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        if (!queueCounts) return;
        this.set((await queueCounts().catch(() => null))?.[key] ?? 0);
      },
    });
  return {
    running: gauge('cacheblend:num_requests_running', 'Blend jobs a worker is running', 'active'),
    waiting: gauge('cacheblend:num_requests_waiting', 'Blend jobs waiting for a worker', 'waiting'),
    promptTokens: new Counter({
      name: 'cacheblend:prompt_tokens_total',
      help: 'Prompt tokens of answered requests',
      registers,
    }),
    generationTokens: new Counter({
      name: 'cacheblend:generation_tokens_total',
      help: 'Generated tokens of answered requests',
      registers,
    }),
    cacheQueries: new Counter({
      name: 'cacheblend:prefix_cache_queries_total',
      help: 'Prompt tokens looked up in the caches (every prompt token)',
      registers,
    }),
    cacheHits: new Counter({
      name: 'cacheblend:prefix_cache_hits_total',
      help: 'Prompt tokens whose K/V were read from a stored cache (template prefix, chunks)',
      registers,
    }),
    ttft: new Histogram({
      name: 'cacheblend:time_to_first_token_seconds',
      help: 'Time to first token: queue wait plus worker time (cache loading included), by mode',
      labelNames: ['mode'],
      buckets: LATENCY,
      registers,
    }),
    e2e: new Histogram({
      name: 'cacheblend:e2e_request_latency_seconds',
      help: 'Enqueue to result, by mode',
      labelNames: ['mode'],
      buckets: LATENCY,
      registers,
    }),
    success: new Counter({
      name: 'cacheblend:request_success_total',
      help: 'Answered requests by finish reason',
      labelNames: ['finished_reason'],
      registers,
    }),
    costPlan: new Counter({
      name: 'cacheblend:cost_plan_total',
      help: 'Blend requests the cost plan ran in full, their caches predicted to load slower than a full prefill',
      labelNames: ['chose'],
      registers,
    }),
  };
}

let instance: ReturnType<typeof build> | undefined;

function servingMetrics() {
  instance ??= build();
  return instance;
}

/** Where the running/waiting gauges read from (the API's blend queue); the latest call wins. */
export function watchBlendQueue(counts: QueueCounts): void {
  servingMetrics();
  queueCounts = counts;
}

/** Record a request the API answered: its job's result and the seconds from enqueue to result. */
export function observeServed(r: BlendJobResult, e2eSeconds: number): void {
  const m = servingMetrics();
  m.promptTokens.inc(r.promptTokens);
  m.generationTokens.inc(r.tokens.length);
  m.cacheQueries.inc(r.promptTokens);
  m.cacheHits.inc(r.cachedTokens);
  m.ttft.observe({ mode: r.mode }, (r.timings.queueMs + r.ttftMs) / 1000);
  m.e2e.observe({ mode: r.mode }, e2eSeconds);
  m.success.inc({ finished_reason: r.finishReason });
  if (r.plan) m.costPlan.inc({ chose: r.plan.chose });
}
