import type { ModelConfig } from '../../types.js';
import { GraphBuilder } from '../../onnx/builder.js';
import { Ctx, finish, type DeviceDtype, type DeviceGraph } from './context.js';

/**
 * One value of a device tensor [B, KV, rows, hd] back on the host: reading it waits for every kernel
 * queued before (a precompute batch's timing, without bringing its caches back).
 */
export function buildSyncGraph(cfg: ModelConfig, dtype: DeviceDtype): DeviceGraph {
  const g = new GraphBuilder('sync');
  const c = new Ctx(g, cfg, dtype);
  const x = g.input('t', c.t, ['B', 'H', 'R', 'D']);
  const one = g.o('Slice', [x, g.int64s([0, 0, 0, 0]), g.int64s([1, 1, 1, 1])]);
  g.output('first', c.high(one), 'float', [1, 1, 1, 1]);
  return finish(c, ['first']);
}

/**
 * Device tensors t0…t{count-1} [B, KV, rows, hd] → host tensors o0… token-major [B, rows, KV, hd], fp32
 * or (`keepPrecision`) in the compute precision: the one way caches come back from the device.
 */
export function buildDownloadGraph(
  cfg: ModelConfig,
  dtype: DeviceDtype,
  count: number,
  keepPrecision = false,
): DeviceGraph {
  const g = new GraphBuilder('download');
  const c = new Ctx(g, cfg, dtype);
  for (let i = 0; i < count; i++) {
    const t = g.input(`t${i}`, c.t, ['B', 'H', 'R', 'D']);
    const x = g.o('Transpose', [keepPrecision ? t : c.high(t)], { perm: [0, 2, 1, 3] });
    g.output(`o${i}`, x, keepPrecision ? c.t : 'float', ['B', 'R', 'H', 'D']);
  }
  return finish(c, g.outputNames());
}
