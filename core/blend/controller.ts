/**
 * CacheBlend's loading controller (§5 of the paper): recomputing a layer for a fraction r of the context
 * should take as long as loading the next layer's KV from the store, so the two pipeline without either
 * waiting. r_load = layerLoadMs / (tokenLayerMs × contextTokens); the ratio used is max(r_load, minRatio),
 * capped at 1. Quality never drops below minRatio; a slow store buys more recompute for free.
 */
export function controllerRatio(opts: {
  minRatio: number;
  layerLoadMs: number;
  tokenLayerMs: number;
  contextTokens: number;
}): number {
  const { minRatio, layerLoadMs, tokenLayerMs, contextTokens } = opts;
  if (contextTokens <= 0 || tokenLayerMs <= 0) return Math.min(1, minRatio);
  const rLoad = layerLoadMs / (tokenLayerMs * contextTokens);
  return Math.min(1, Math.max(rLoad, minRatio));
}

/** Running estimates the controller needs, updated from real loads and layer runs (EWMA). */
export class CostModel {
  private loadBytesPerMs: number | null = null;
  private layerMsPerToken: number | null = null;

  constructor(private readonly alpha = 0.3) {}

  observeLoad(bytes: number, ms: number): void {
    if (bytes <= 0 || ms <= 0) return;
    const r = bytes / ms;
    this.loadBytesPerMs =
      this.loadBytesPerMs === null ? r : this.alpha * r + (1 - this.alpha) * this.loadBytesPerMs;
  }

  observeLayer(tokens: number, ms: number): void {
    if (tokens <= 0 || ms <= 0) return;
    const r = ms / tokens;
    this.layerMsPerToken =
      this.layerMsPerToken === null ? r : this.alpha * r + (1 - this.alpha) * this.layerMsPerToken;
  }

  /** Controller inputs for a request whose one layer of KV is `layerBytes`, or null before any observation. */
  estimate(layerBytes: number): { layerLoadMs: number; tokenLayerMs: number } | null {
    if (this.loadBytesPerMs === null || this.layerMsPerToken === null) return null;
    return { layerLoadMs: layerBytes / this.loadBytesPerMs, tokenLayerMs: this.layerMsPerToken };
  }
}
