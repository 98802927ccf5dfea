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

/**
 * Running estimates the controller and the per-request plan need, updated from real loads and runs
 * (EWMA): load bandwidth overall and per tier, the device's upload bandwidth, and prefill time per token
 * (per layer from the host engine's layer runs, whole-model from full prefills).
 */
export class CostModel {
  private loadBytesPerMs: number | null = null;
  private layerMsPerToken: number | null = null;
  private readonly tierBytesPerMs = new Map<string, number>();
  private uploadBytesPerMs: number | null = null;
  private fullMsPerToken: number | null = null;

  constructor(private readonly alpha = 0.3) {}

  private ewma(old: number | null, r: number): number {
    return old === null ? r : this.alpha * r + (1 - this.alpha) * old;
  }

  /** A layer read from a tier (`tier` given) or from wherever (the controller's overall rate). */
  observeLoad(bytes: number, ms: number, tier?: string): void {
    if (bytes <= 0 || ms <= 0) return;
    this.loadBytesPerMs = this.ewma(this.loadBytesPerMs, bytes / ms);
    if (tier) this.tierBytesPerMs.set(tier, this.ewma(this.tierBytesPerMs.get(tier) ?? null, bytes / ms));
  }

  /** Stored layers uploaded to a device: bytes and the upload runs' wall time. */
  observeUpload(bytes: number, ms: number): void {
    if (bytes > 0 && ms > 0) this.uploadBytesPerMs = this.ewma(this.uploadBytesPerMs, bytes / ms);
  }

  /** A full prefill of `tokens` prompt tokens. */
  observeFull(tokens: number, ms: number): void {
    if (tokens > 0 && ms > 0) this.fullMsPerToken = this.ewma(this.fullMsPerToken, ms / tokens);
  }

  /** Predicted full prefill of `tokens` tokens through `layers` layers, or null before any observation. */
  fullMs(tokens: number, layers: number): number | null {
    if (this.fullMsPerToken !== null) return this.fullMsPerToken * tokens;
    return this.layerMsPerToken === null ? null : this.layerMsPerToken * layers * tokens;
  }

  /**
   * Predicted time to bring a request's chunk caches in: reads from each tier, and (a device engine) the
   * uploads, pipelined with each other (the slower of the two). Null while a needed rate is unknown.
   */
  loadMs(readBytes: Readonly<Record<string, number>>, uploadBytes: number): number | null {
    let read = 0;
    for (const [tier, bytes] of Object.entries(readBytes)) {
      if (bytes <= 0) continue;
      const rate = this.tierBytesPerMs.get(tier);
      if (rate === undefined) return null;
      read += bytes / rate;
    }
    if (uploadBytes <= 0) return read;
    if (this.uploadBytesPerMs === null) return null;
    return Math.max(read, uploadBytes / this.uploadBytesPerMs);
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
