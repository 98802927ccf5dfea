import { DEFAULT_CHECK_LAYER } from '../../core/blend/index.js';
import type { Engine, SequenceCache } from '../../core/model/engine.js';
import type { KvCache } from '../../core/model/host/kv-cache.js';

/**
 * The reference a question-aware blend at ratio 0 must equal. Such a blend recomputes every token through
 * the check layer and keeps those rows (full prefill's own: every token is fresh below), reuses the stored
 * rows above it, and recomputes only the suffix. The reference builds that cache from two other modes'
 * results — full prefill's rows for layers 0…check, reuse's rows above — for the prompt's first
 * `context` rows (everything before the suffix; decoding since leaves them as they were), then appends the
 * suffix with the engine's ordinary forward pass, as reuse does.
 */
export async function reuseOverFullLowerLayers(
  engine: Engine,
  full: SequenceCache,
  reuse: SequenceCache,
  context: number,
  suffix: readonly number[],
  check = DEFAULT_CHECK_LAYER,
): Promise<Float32Array> {
  const [f, r] = [full as KvCache, reuse as KvCache]; // a CPU engine's caches are on the host
  const rows = (c: KvCache, l: number, kind: 'keys' | 'values') =>
    c[kind][l].subarray(0, context * c.rowSize);
  const from = (l: number) => (l <= check ? f : r);
  const mixed = engine.newCache(context + suffix.length);
  const layers = Array.from({ length: engine.config.numLayers }, (_, l) => l);
  mixed.appendAll(
    layers.map((l) => rows(from(l), l, 'keys')),
    layers.map((l) => rows(from(l), l, 'values')),
    f.positions.subarray(0, context),
  );
  return engine.forward(mixed, suffix);
}
