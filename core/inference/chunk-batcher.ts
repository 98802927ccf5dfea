/**
 * Gathers the chunk computations that concurrent precompute jobs ask for and runs them as one batch: on a
 * device-resident (GPU) engine, one run computes many chunks (precomputeChunks). Each job still stores
 * and reports its own object. A batch starts when `maxBatch` chunks wait, or `windowMs` after the first
 * of them arrived, so jobs that start together run together and a lone job waits only the window.
 */
export class ChunkBatcher<R> {
  private waiting: { ids: number[]; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly run: (batch: number[][]) => Promise<R[]>,
    private readonly maxBatch: number,
    private readonly windowMs = 20,
  ) {}

  compute(ids: number[]): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ ids, resolve, reject });
      if (this.waiting.length >= this.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.windowMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.waiting.splice(0, this.maxBatch);
    if (this.waiting.length > 0) this.timer = setTimeout(() => this.flush(), this.windowMs);
    if (batch.length === 0) return;
    this.run(batch.map((b) => b.ids)).then(
      (out) => batch.forEach((b, i) => b.resolve(out[i])),
      (err: unknown) => batch.forEach((b) => b.reject(err)),
    );
  }
}
