/**
 * A request's hold on the GPU-tier chunks it reads. Each is retained for the prefill, so a tier that evicts
 * or replaces it meanwhile (another request's upload, a burst of new chunks) frees nothing under this
 * request; one freed already, between the request opening it and its prefill starting, is read from the
 * host tiers instead, like any other miss of the GPU tier.
 */
import type { DeviceChunk } from '../model/device/index.js';
import type { ChunkKvSource } from './types.js';

export interface PinnedSources {
  sources: ChunkKvSource[];
  /** Drop the request's references (once its prefill no longer reads the chunks' device buffers). */
  release(): void;
}

export function pinDeviceChunks(sources: readonly ChunkKvSource[]): PinnedSources {
  const held: DeviceChunk[] = [];
  const pinned = sources.map((c) => {
    if (!c.device) return c;
    if (c.device.tryRetain()) {
      held.push(c.device);
      return c;
    }
    return hostOnly(c);
  });
  return { sources: pinned, release: () => held.splice(0).forEach((d) => d.release()) };
}

/** The source without its device copy: its layers come from where the source reads them on the host. */
function hostOnly(c: ChunkKvSource): ChunkKvSource {
  return {
    tokenIds: c.tokenIds,
    layer: (l) => c.layer(l),
    ...(c.storedLayer && { storedLayer: (l: number) => c.storedLayer!(l) }),
    ...(c.keepOnDevice && { keepOnDevice: (d: DeviceChunk) => c.keepOnDevice!(d) }),
  };
}
