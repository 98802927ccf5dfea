import ort from 'onnxruntime-node';
import { buildAssembleGraph } from './graphs/index.js';
import type { DeviceChunk, DeviceLayers } from './cache.js';
import { int64, range, selectiveInts, type Feeds, type Ints } from './ints.js';
import { DeviceRunnerBase } from './runner.js';

/** The device runner: DeviceRunnerBase's runs (runner.ts) and CacheBlend's on the device. */
export class DeviceRunner extends DeviceRunnerBase {
  /**
   * A prompt's cache for layers [from, L) from chunk caches on the device: BOS's row, each chunk's rows
   * (keys rotated from positions 1…n to its offset), then `questionRows` zero rows for a blend to fill.
   * Returned per layer from `from` on, [1, rows, kvHeads, headDim].
   */
  async assemble(
    chunks: readonly DeviceChunk[],
    offsets: readonly number[],
    from: number,
    questionRows: number,
  ): Promise<DeviceLayers> {
    const n = chunks.length;
    const withQuestion = questionRows > 0;
    const session = await this.session(`assemble:${n}:${from}:${withQuestion}`, () =>
      buildAssembleGraph(this.config, this.dtype, n, from, withQuestion),
    );
    const bos = (await this.bosRows()).chunk;
    const contextRows = chunks.reduce((a, c) => a + c.tokens, 0);
    const shifts = new BigInt64Array(contextRows);
    let at = 0;
    chunks.forEach((c, i) => {
      shifts.fill(BigInt(offsets[i] - 1), at, at + c.tokens);
      at += c.tokens;
    });
    const layers = this.config.numLayers - from;
    const shiftPos = new BigInt64Array(layers * contextRows);
    for (let l = 0; l < layers; l++) shiftPos.set(shifts, l * contextRows);
    const feeds: Feeds = {
      bos_k: bos.k,
      bos_v: bos.v,
      q_len: int64([questionRows]),
      shift_pos: new ort.Tensor('int64', shiftPos, [layers, contextRows]),
    };
    chunks.forEach((c, i) => Object.assign(feeds, { [`c${i}_k`]: c.k, [`c${i}_v`]: c.v }));
    return this.layerOutputs(await this.run(session, feeds), from, this.config.numLayers);
  }

  /**
   * CacheBlend's first stage: the prompt's tokens from the first chunk on (prompt index contextStart)
   * through layers [0, check) after the rows below them (BOS and the template prefix, the first
   * contextStart rows of `past`, that layer's assembled cache), then the deviation at layer `check` of the
   * context tokens' fresh K/V from `cached` (that layer's assembled cache). Returns the check layer's input
   * hidden states (on the device), the deviations (on the host) and the caches of layers [0, check).
   */
  async blendFront(
    layout: { promptIds: readonly number[]; contextStart: number; contextEnd: number },
    cached: { k: ort.Tensor; v: ort.Tensor },
    past: DeviceLayers,
    check: number,
    metric: 'k' | 'v' | 'kv',
  ): Promise<DeviceLayers & { hidden: ort.Tensor; dev: Float32Array }> {
    const { promptIds, contextStart: start, contextEnd } = layout;
    const N = promptIds.length;
    const stack = await this.stack({
      from: 0,
      to: check,
      cache: 'append',
      slicePast: true,
      input: 'ids',
      head: false,
      emitHidden: true,
      deviation: metric,
    });
    const feeds: Feeds = {
      ...this.positionFeeds(range(start, N)),
      ...DeviceRunner.lengths(1, N),
      past_rows: int64([start]),
      cached_k: cached.k,
      cached_v: cached.v,
    };
    for (let l = 0; l < check; l++) {
      feeds[`past_k_${l}`] = past.k[l];
      feeds[`past_v_${l}`] = past.v[l];
    }
    const out = await this.runStack(stack, feeds, {
      ids: promptIds.slice(start),
      q_pos: range(start, N),
      k_pos: range(0, N),
      ctx_rows: range(start, contextEnd),
    });
    return { ...this.layerOutputs(out, 0, check), hidden: out.hidden, dev: out.dev.data as Float32Array };
  }

  /**
   * CacheBlend's selective layers [from, to): the `active` prompt positions (ascending; the selected context
   * tokens, then the question), taken from rows `rows` of `hidden`, have their fresh K/V overwrite their
   * rows of `cache` (those layers' caches, N rows each) before they attend over it by position. Returns
   * those layers' blended caches and, as asked: the last active row's logits (`to` = L), the output hidden
   * states (one row per active token), and the deviation at layer `to` of the first `score.count` active
   * tokens from `score.cached` (gradual filtering).
   */
  async blendSelected(
    input: { hidden: ort.Tensor; rows: ArrayLike<number>; active: Int32Array; promptTokens: number },
    cache: DeviceLayers,
    from: number,
    to: number,
    score: { metric: 'k' | 'v' | 'kv'; count: number; cached: { k: ort.Tensor; v: ort.Tensor } } | null,
  ): Promise<DeviceLayers & { logits?: Float32Array; hidden?: ort.Tensor; dev?: Float32Array }> {
    const L = this.config.numLayers;
    const { active } = input;
    const stack = await this.stack({
      from,
      to,
      cache: 'scatter',
      input: 'rows',
      head: to === L,
      emitHidden: to < L,
      ...(score ? { deviation: score.metric } : {}),
    });
    const N = input.promptTokens;
    const feeds: Feeds = {
      hidden_in: input.hidden,
      ...this.positionFeeds(active),
      ...DeviceRunner.lengths(1, N + active.length),
    };
    const ints: Ints = { rows: input.rows, ...selectiveInts(active, N, this.selective) };
    if (score) {
      ints.ctx_rows = active.subarray(0, score.count);
      Object.assign(feeds, { cached_k: score.cached.k, cached_v: score.cached.v });
    }
    for (let l = from; l < to; l++) {
      feeds[`cache_k_${l}`] = cache.k[l - from];
      feeds[`cache_v_${l}`] = cache.v[l - from];
    }
    const out = await this.runStack(stack, feeds, ints);
    return {
      ...this.layerOutputs(out, from, to),
      logits: out.logits?.data as Float32Array | undefined,
      hidden: out.hidden,
      dev: out.dev?.data as Float32Array | undefined,
    };
  }
}
