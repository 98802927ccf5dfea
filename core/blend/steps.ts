/**
 * The named steps the prefill modes are composed from, as host functions: lay the prompt out, read chunk
 * layers into the cache (keys re-rotated to the chunk's offset), recompute every token through the layers
 * below the check layer, score tokens by deviation and keep the largest, and recompute the selection
 * through one layer against the mixed cache. `HostPrefillSteps` (host-steps.ts) puts them behind the
 * `PrefillSteps` interface the modes use; device-steps.ts does the same steps on the GPU.
 *
 * Cache rows follow prompt order: row 0 is BOS, then the template's prefix (a system prompt, if any), then
 * each chunk's tokens, then the suffix (the question, wrapped by the template); a row's RoPE position is its
 * prompt index.
 */
import { InvalidArgumentError } from '../errors.js';
import { rotateKeys } from '../kv/rope.js';
import { buildMask, concatFloat32, type Engine } from '../model/engine.js';
import type { KvCache } from '../model/host/kv-cache.js';
import { deviations, questionAttention, type CheckScores } from './selection.js';
import type { ChunkKvSource, DeviationMetric } from './types.js';

export interface PromptLayout {
  /** BOS + the prefix's ids + every chunk's ids + the suffix's (question's) ids. */
  promptIds: number[];
  /** Prompt index of the first chunk token (1 + prefix length): prefix rows lie below it. */
  contextStart: number;
  /** Prompt index where each chunk starts. */
  offsets: number[];
  /** Prompt index of the first suffix (question) token. */
  contextEnd: number;
  /** Prompt index = RoPE position of every row; views of this one array serve every step. */
  positions: Int32Array;
}

export function layoutPrompt(
  bos: number,
  chunks: readonly ChunkKvSource[],
  question: readonly number[],
  prefix: ChunkKvSource | null = null,
): PromptLayout {
  const promptIds = [bos, ...(prefix?.tokenIds ?? [])];
  const contextStart = promptIds.length;
  const offsets: number[] = [];
  for (const c of chunks) {
    if (c.tokenIds.length === 0) throw new InvalidArgumentError('a chunk has no tokens');
    offsets.push(promptIds.length);
    promptIds.push(...c.tokenIds);
  }
  const contextEnd = promptIds.length;
  promptIds.push(...question);
  const positions = Int32Array.from({ length: promptIds.length }, (_, i) => i);
  return { promptIds, contextStart, offsets, contextEnd, positions };
}

type LayerKv = { k: Float32Array; v: Float32Array };

/**
 * Reads chunk caches into a prompt's cache one layer at a time. `prefetch(l)` asks every source for layer
 * l now, so its bytes arrive while earlier layers compute; `fill(l)` waits for them, copies them into rows
 * offset…offset+len-1 and rotates the keys from positions 1…len to the chunk's real offset.
 */
export class ChunkLayerReader {
  /** Time spent waiting on sources that were not ready when a layer needed them. */
  waitedMs = 0;
  private readonly pending = new Map<string, Promise<LayerKv>>();
  /**
   * Layers being or already copied into the cache. Each is read and written once: a second fill would put
   * stale rows back over fresh ones, and a second prefetch would read the layer again (the lookahead fills
   * every layer before the selective layers ask for them).
   */
  private readonly filled = new Map<number, Promise<void>>();

  constructor(
    private readonly engine: Engine,
    private readonly cache: KvCache,
    private readonly chunks: readonly ChunkKvSource[],
    private readonly offsets: readonly number[],
  ) {}

  prefetch(l: number): void {
    if (l >= this.engine.config.numLayers || this.filled.has(l)) return;
    this.chunks.forEach((c, i) => {
      const key = `${i}:${l}`;
      if (this.pending.has(key)) return;
      const p = c.layer(l);
      p.catch(() => undefined); // observed when awaited; avoid an unhandled rejection meanwhile
      this.pending.set(key, p);
    });
  }

  /** Layer l's chunk rows in the cache, rotated to their offsets; once per layer, however often asked. */
  fill(l: number): Promise<void> {
    let done = this.filled.get(l);
    if (!done) this.filled.set(l, (done = this.copyLayer(l)));
    return done;
  }

  private async copyLayer(l: number): Promise<void> {
    const { numKvHeads: KV, headDim: hd, ropeLayout } = this.engine.config;
    for (let c = 0; c < this.chunks.length; c++) {
      const key = `${c}:${l}`;
      const t0 = performance.now();
      const { k, v } = await (this.pending.get(key) ?? this.chunks[c].layer(l));
      this.waitedMs += performance.now() - t0;
      this.pending.delete(key);
      const n = this.chunks[c].tokenIds.length;
      const at = this.offsets[c];
      // Copy into the cache, then rotate there: the source (an LRU entry, say) must stay as stored.
      this.cache.writeRows(l, at, k.subarray(0, n * KV * hd), v.subarray(0, n * KV * hd));
      // A template prefix sits where it was computed (offset 1): nothing to rotate.
      if (at === 1) continue;
      const rows = this.cache.keys[l].subarray(at * KV * hd, (at + n) * KV * hd);
      rotateKeys(rows, n, KV, hd, ropeLayout, this.engine.invFreq, at - 1);
    }
  }

  /** Every layer from `from` on, each requested one layer ahead of its use. */
  async fillFrom(from: number): Promise<void> {
    for (let l = from; l < this.engine.config.numLayers; l++) {
      this.prefetch(l + 1);
      await this.fill(l);
    }
  }
}

/** Tokens computed at the current layer: prompt indices in prompt order, and their hidden states. */
export interface ActiveTokens {
  indices: Int32Array;
  hidden: Float32Array;
}

/**
 * Run every active token through layers 0…layers-1 (below the check layer, no chunk row is reused), writing
 * their K/V. In prefill-sized blocks, as Engine.forward does: each block attends to BOS and the prefix
 * (whose cached rows are exact: they were computed at these very positions), the earlier blocks' fresh rows
 * of the layer, and itself. Expects every prompt token from contextStart on to be active.
 */
export async function recomputeAllTokens(
  engine: Engine,
  cache: KvCache,
  layout: PromptLayout,
  active: ActiveTokens,
  layers: number,
): Promise<Float32Array> {
  const D = engine.config.hiddenSize;
  const row = cache.rowSize;
  const B = engine.prefillBlock;
  const n = active.indices.length;
  const start = layout.contextStart;
  let hidden = active.hidden;
  for (let l = 0; l < layers; l++) {
    const outs: Float32Array[] = [];
    for (let s = 0; s < n; s += B) {
      const e = Math.min(n, s + B);
      const idx = active.indices.subarray(s, e);
      const r = await engine.runLayer(
        l,
        hidden.subarray(s * D, e * D),
        engine.rope(idx),
        cache.keys[l].subarray(0, (start + s) * row),
        cache.values[l].subarray(0, (start + s) * row),
        buildMask(idx, layout.positions.subarray(0, start + s)),
      );
      cache.writeRows(l, start + s, r.k, r.v);
      outs.push(r.hidden);
    }
    hidden = concatFloat32(outs);
  }
  return hidden;
}

/**
 * Deviation at `layer` of the active context tokens (the first `count` active ones): their fresh K/V
 * projected from their input to the layer, against the rows the cache holds for them.
 */
export async function scoreActive(
  engine: Engine,
  cache: KvCache,
  layer: number,
  active: ActiveTokens,
  count: number,
  metric: DeviationMetric,
): Promise<Float64Array> {
  const D = engine.config.hiddenSize;
  const ctx = active.indices.subarray(0, count);
  const fresh = await engine.projectKv(layer, active.hidden.subarray(0, count * D), engine.rope(ctx));
  return deviations(metric, cache.rowSize, fresh, cache.keys[layer], cache.values[layer], ctx);
}

/**
 * The check layer's scores when every prompt token from the first chunk on is active: the context's
 * deviation and the question's attention to the context (selection.ts). One projection of every active
 * token gives the context's fresh K/V and the question's queries and keys. The fresh rows replace the
 * stored ones at this layer for every token, so with a question-aware selection the cache's layers up to
 * and including the check layer are full prefill's; the question attends to BOS's and the prefix's rows
 * (exact, from the cache), then the fresh ones.
 */
export async function scoreWithQuestion(
  engine: Engine,
  cache: KvCache,
  layout: PromptLayout,
  layer: number,
  active: ActiveTokens,
  metric: DeviationMetric,
): Promise<CheckScores> {
  const { numHeads: H, headDim: hd } = engine.config;
  const row = cache.rowSize;
  const { contextStart: start, contextEnd: end } = layout;
  const fresh = await engine.projectKv(layer, active.hidden, engine.rope(active.indices), true);
  const count = end - start;
  const ctx = active.indices.subarray(0, count);
  const deviation = deviations(metric, row, fresh, cache.keys[layer], cache.values[layer], ctx);
  // Every token is fresh through the layers below, so these rows are full prefill's own: keep them all,
  // not only the selected tokens'. The question then attends, here and when it is recomputed, to the
  // keys it was scored against (dev sets: fused 0.946 -> 0.957 easy, 0.436 -> 0.451 main; docs/accuracy.md).
  cache.writeRowsAt(layer, active.indices, fresh.k, fresh.v);
  const keys = cache.keys[layer].subarray(0, layout.promptIds.length * row);
  const q = fresh.q!.subarray(count * H * hd);
  const attention = questionAttention(engine.config, q, active.indices.subarray(count), keys, start, end);
  return { deviation, attention };
}

/**
 * The lookahead's question attention: the question tokens alone (`question`, at the check layer's input)
 * through layers [check, L) over the cache before selection — every token's fresh rows at the check layer
 * (scoreWithQuestion wrote them), the chunks' stored rows above, as reuse sees them — and at
 * each layer the last question token's attention to every context row (selection.ts), summed over layers.
 * The question's rows it writes are overwritten when blend recomputes the question. `fill(l)` puts layer
 * l's chunk rows in the cache.
 */
export async function lookaheadAttention(
  engine: Engine,
  cache: KvCache,
  layout: PromptLayout,
  question: ActiveTokens,
  check: number,
  fill: (layer: number) => Promise<void>,
): Promise<Float64Array> {
  const { numHeads: H, headDim: hd, numLayers: L } = engine.config;
  const N = layout.promptIds.length;
  const last = question.indices.length - 1;
  const out = new Float64Array(layout.contextEnd - layout.contextStart);
  let q = question;
  for (let l = check; l < L; l++) {
    await fill(l);
    const fresh = await engine.projectKv(l, q.hidden, engine.rope(q.indices), true);
    cache.writeRowsAt(l, q.indices, fresh.k, fresh.v);
    const keys = cache.keys[l].subarray(0, N * cache.rowSize);
    const at = questionAttention(
      engine.config,
      fresh.q!.subarray(last * H * hd),
      q.indices.subarray(last),
      keys,
      layout.contextStart,
      layout.contextEnd,
    );
    for (let i = 0; i < out.length; i++) out[i] += at[i];
    if (l + 1 < L)
      q = { indices: q.indices, hidden: await recomputeSelected(engine, cache, l, q, layout.positions) };
  }
  return out;
}

/** Keep the listed active context tokens (indices among the first `count`, ascending) and every question token. */
export function keepActive(
  active: ActiveTokens,
  keepContext: readonly number[],
  count: number,
  hiddenSize: number,
): ActiveTokens {
  const D = hiddenSize;
  // Survivors first (ascending), then the question tokens, which follow the context in prompt order.
  const keep = [
    ...keepContext,
    ...Array.from({ length: active.indices.length - count }, (_, q) => count + q),
  ];
  const indices = new Int32Array(keep.length);
  const hidden = new Float32Array(keep.length * D);
  keep.forEach((from, i) => {
    indices[i] = active.indices[from];
    hidden.set(active.hidden.subarray(from * D, (from + 1) * D), i * D);
  });
  return { indices, hidden };
}

/**
 * Block size for the selective layers. The selected tokens are spread over the whole prompt; on the CPU,
 * splitting them into four position-ordered blocks lets early blocks skip the keys after them (as causal
 * prefill does), which saves more than the smaller matrix products cost. On a GPU provider every extra
 * run copies the cache to the device again, so there it runs as few blocks as it can.
 */
function selectiveBlock(engine: Engine, active: number): number {
  const B = engine.prefillBlock;
  return engine.executionProvider === 'cpu' ? Math.min(B, Math.max(64, Math.ceil(active / 4))) : B;
}

/**
 * Run the active tokens through `layer`, attending by position over the whole mixed cache, and overwrite
 * their rows with the fresh K/V. Rows of active tokens not computed yet at this layer (stale context rows,
 * unwritten question rows) stay hidden; each block sees the fresh rows the blocks before it wrote.
 */
export async function recomputeSelected(
  engine: Engine,
  cache: KvCache,
  layer: number,
  active: ActiveTokens,
  positions: Int32Array,
): Promise<Float32Array> {
  const D = engine.config.hiddenSize;
  const row = cache.rowSize;
  const notYetComputed = new Uint8Array(positions.length);
  for (const i of active.indices) notYetComputed[i] = 1;
  const outs: Float32Array[] = [];
  const block = selectiveBlock(engine, active.indices.length);
  for (let s = 0; s < active.indices.length; s += block) {
    const idx = active.indices.subarray(s, Math.min(active.indices.length, s + block));
    // Active tokens are in prompt order, so this block needs only the rows up to its last token.
    const end = idx[idx.length - 1] + 1;
    const out = await engine.runLayer(
      layer,
      active.hidden.subarray(s * D, (s + idx.length) * D),
      engine.rope(idx),
      cache.keys[layer].subarray(0, end * row),
      cache.values[layer].subarray(0, end * row),
      buildMask(idx, positions.subarray(0, end), notYetComputed.subarray(0, end)),
    );
    cache.writeRowsAt(layer, idx, out.k, out.v);
    for (const i of idx) notYetComputed[i] = 0;
    outs.push(out.hidden);
  }
  return concatFloat32(outs);
}
