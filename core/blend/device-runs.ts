import ort from 'onnxruntime-node';
import type { StoredKvLayer } from '../kv/stored.js';
import {
  buildAssembleGraph,
  DeviceRunner,
  int64,
  range,
  selectiveInts,
  type AssembleSpec,
  type DeviceChunk,
  type DeviceLayers,
  type DeviationMetric,
  type Feeds,
  type Ints,
} from '../model/device/index.js';

/**
 * One chunk of an assemble run: its cache already on the device, or its stored layers from the host
 * (`stored[j]`: layer from + j of the run's layers).
 */
export type AssemblePart =
  { device: DeviceChunk; tokens: number } | { stored: readonly StoredKvLayer[]; tokens: number };

/**
 * CacheBlend's runs on a device-resident engine, over the generic DeviceRunner (core/model/device): the
 * assembly of a prompt's cache from chunk caches, the front run with the check layer's scores, the
 * lookahead, and the selective layers. The stack graphs they run are the device's (graphs/stack.ts with
 * its blend options); what to run and with which feeds is decided here.
 */
export class DeviceBlendRuns {
  constructor(readonly runner: DeviceRunner) {}

  private get config() {
    return this.runner.config;
  }

  /**
   * Layers [from, from + count) of a prompt's cache, in one run: BOS's row, each chunk's rows (keys
   * rotated from positions 1…n to its offset), then `questionRows` zero rows for a blend to fill. Chunks
   * are on the device already, or come as `stored[j]`, their stored bytes of layer from + j, uploaded
   * as they are (HostPacker) and widened or dequantized on the GPU. With `keepHost`, each host chunk's
   * rows on the device come back too, per layer (for a GPU tier). Returns the layers [1, rows, KV, hd].
   */
  async assemble(
    parts: readonly AssemblePart[],
    offsets: readonly number[],
    from: number,
    count: number,
    questionRows: number,
    keepHost: boolean,
  ): Promise<DeviceLayers & { kept: (DeviceLayers | null)[]; uploadedBytes: number }> {
    const { numKvHeads: KV, headDim: hd } = this.config;
    const hosts = parts.flatMap((p) => ('stored' in p ? [p] : []));
    const packed = hosts.length
      ? this.runner.packer.pack(
          Array.from({ length: count }, (_, j) => hosts.map((p) => p.stored[j])),
          KV,
          hd,
        )
      : null;
    const spec: AssembleSpec = {
      chunks: parts.map((p) => ('stored' in p ? 'host' : 'device')),
      host: packed?.form ?? null,
      layers: count,
      withQuestion: questionRows > 0,
      keepHost: keepHost && hosts.length > 0,
    };
    const session = await this.runner.session(`assemble:${JSON.stringify(spec)}`, () =>
      buildAssembleGraph(this.config, this.runner.dtype, spec),
    );
    const bos = (await this.runner.bosRows()).rows;
    const feeds: Feeds = { ...packed?.feeds, ints: this.assembleInts(parts, offsets, questionRows) };
    for (let j = 0; j < count; j++) {
      feeds[`bos_k_${j}`] = bos.k[from + j];
      feeds[`bos_v_${j}`] = bos.v[from + j];
      parts.forEach((p, i) => {
        if ('device' in p) {
          feeds[`c${i}_k_${j}`] = p.device.k[from + j];
          feeds[`c${i}_v_${j}`] = p.device.v[from + j];
        }
      });
    }
    let out: Record<string, ort.Tensor>;
    try {
      out = await this.runner.run(session, feeds);
    } finally {
      packed?.release();
    }
    const layers = this.runner.layerOutputs(out, 0, count);
    const kept = parts.map((p, i) =>
      spec.keepHost && 'stored' in p
        ? {
            k: Array.from({ length: count }, (_, j) => out[`h${i}_k_${j}`]),
            v: Array.from({ length: count }, (_, j) => out[`h${i}_v_${j}`]),
          }
        : null,
    );
    return { ...layers, kept, uploadedBytes: packed?.bytes ?? 0 };
  }

  /** The assemble graph's `ints`: [q_len, each host chunk's row range in the pack, each row's shift]. */
  private assembleInts(parts: readonly AssemblePart[], offsets: readonly number[], questionRows: number) {
    const hosts = parts.filter((p) => 'stored' in p).length;
    const rows = parts.reduce((a, p) => a + p.tokens, 0);
    const ints = new BigInt64Array(1 + 2 * hosts + rows);
    ints[0] = BigInt(questionRows);
    let h = 0;
    let packRow = 0;
    let at = 1 + 2 * hosts;
    parts.forEach((p, i) => {
      if ('stored' in p) {
        ints[1 + 2 * h] = BigInt(packRow);
        ints[2 + 2 * h++] = BigInt((packRow += p.tokens));
      }
      ints.fill(BigInt(offsets[i] - 1), at, (at += p.tokens));
    });
    return new ort.Tensor('int64', ints, [ints.length]);
  }

  /**
   * CacheBlend's first stage: the prompt's tokens from the first chunk on (prompt index contextStart)
   * through layers [0, check) after the rows below them (BOS and the template prefix, the first
   * contextStart rows of `past`, that layer's assembled cache), then the deviation at layer `check` of the
   * context tokens' fresh K/V from `cached` (that layer's assembled cache). Returns the check layer's input
   * hidden states (on the device), the deviations (on the host) and the caches of layers [0, check). With
   * `question`, also the check layer with every token's fresh rows (`check`, on the device) and the
   * question's attention to each row there (`attn`, on the host; rows [0, N)).
   */
  async blendFront(
    layout: { promptIds: readonly number[]; contextStart: number; contextEnd: number },
    cached: { k: ort.Tensor; v: ort.Tensor },
    past: DeviceLayers,
    check: number,
    metric: DeviationMetric,
    question = false,
  ): Promise<
    DeviceLayers & {
      hidden: ort.Tensor;
      dev: Float32Array;
      check?: { k: ort.Tensor; v: ort.Tensor };
      attn?: Float32Array;
    }
  > {
    const { promptIds, contextStart: start, contextEnd } = layout;
    const N = promptIds.length;
    const stack = await this.runner.stack({
      from: 0,
      to: check,
      cache: 'append',
      slicePast: true,
      input: 'ids',
      head: false,
      emitHidden: true,
      deviation: metric,
      ...(question ? { questionAttention: true } : {}),
    });
    const feeds: Feeds = {
      ...this.runner.positionFeeds(range(start, N)),
      ...DeviceRunner.lengths(1, N),
      past_rows: int64([start]),
      cached_k: cached.k,
      cached_v: cached.v,
    };
    for (let l = 0; l < check; l++) {
      feeds[`past_k_${l}`] = past.k[l];
      feeds[`past_v_${l}`] = past.v[l];
    }
    const out = await this.runner.runStack(stack, feeds, {
      ids: promptIds.slice(start),
      q_pos: range(start, N),
      k_pos: range(0, N),
      ctx_rows: range(start, contextEnd),
    });
    const layers = this.runner.layerOutputs(out, 0, check);
    const front = { ...layers, hidden: out.hidden, dev: out.dev.data as Float32Array };
    if (!question) return front;
    return { ...front, check: { k: out.check_k, v: out.check_v }, attn: out.attn.data as Float32Array };
  }

  /**
   * The lookahead of the question-aware selections over layers [from, to): the question's prompt positions
   * `active`, from rows `rows` of `hidden`, through those layers over `cache` (their fresh rows written
   * over their own), and the last question token's attention to every row summed over the layers (`look`,
   * on the host, rows [0, N)). Returns the caches with the question's rows and, below the last layer, the
   * question's output hidden states.
   */
  async blendLookahead(
    input: { hidden: ort.Tensor; rows: ArrayLike<number>; active: Int32Array; promptTokens: number },
    cache: DeviceLayers,
    from: number,
    to: number,
  ): Promise<DeviceLayers & { look: Float32Array; hidden?: ort.Tensor }> {
    const L = this.config.numLayers;
    const stack = await this.runner.stack({
      from,
      to,
      cache: 'scatter',
      input: 'rows',
      head: false,
      emitHidden: to < L,
      lookahead: true,
    });
    const N = input.promptTokens;
    const feeds: Feeds = {
      hidden_in: input.hidden,
      ...this.runner.positionFeeds(input.active),
      ...DeviceRunner.lengths(1, N + input.active.length),
    };
    for (let l = from; l < to; l++) {
      feeds[`cache_k_${l}`] = cache.k[l - from];
      feeds[`cache_v_${l}`] = cache.v[l - from];
    }
    const ints: Ints = { rows: input.rows, ...selectiveInts(input.active, N, this.runner.selective) };
    const out = await this.runner.runStack(stack, feeds, ints);
    return {
      ...this.runner.layerOutputs(out, from, to),
      look: out.look.data as Float32Array,
      hidden: out.hidden,
    };
  }

  /**
   * CacheBlend's selective layers [from, to): the `active` prompt positions (ascending; the selected context
   * tokens, then the question), taken from rows `rows` of `hidden`, have their fresh K/V overwrite their
   * rows of `cache` (those layers' caches, N rows each) before they attend over it by position. Returns
   * those layers' blended caches and, as asked: the last active row's logits (`to` = L), the output hidden
   * states (one row per active token), and the deviation at layer `to` of the first `score.count` active
   * tokens from `score.cached` (gradual filtering). With `shift`, each layer's stored rows that stay move
   * first (core/blend/stale-shift.ts): `weights` per active token, `stale` per cache row.
   */
  async blendSelected(
    input: { hidden: ort.Tensor; rows: ArrayLike<number>; active: Int32Array; promptTokens: number },
    cache: DeviceLayers,
    from: number,
    to: number,
    score: { metric: DeviationMetric; count: number; cached: { k: ort.Tensor; v: ort.Tensor } } | null,
    shift: { weights: Float32Array; stale: Float32Array } | null = null,
  ): Promise<DeviceLayers & { logits?: Float32Array; hidden?: ort.Tensor; dev?: Float32Array }> {
    const L = this.config.numLayers;
    const { active } = input;
    const stack = await this.runner.stack({
      from,
      to,
      cache: 'scatter',
      input: 'rows',
      head: to === L,
      emitHidden: to < L,
      ...(score ? { deviation: score.metric } : {}),
      ...(shift ? { shiftStale: true } : {}),
    });
    const N = input.promptTokens;
    const feeds: Feeds = {
      hidden_in: input.hidden,
      ...this.runner.positionFeeds(active),
      ...DeviceRunner.lengths(1, N + active.length),
    };
    const ints: Ints = { rows: input.rows, ...selectiveInts(active, N, this.runner.selective) };
    if (shift) {
      feeds.shift_w = new ort.Tensor('float32', shift.weights, [shift.weights.length]);
      feeds.shift_stale = new ort.Tensor('float32', shift.stale, [shift.stale.length]);
    }
    if (score) {
      ints.ctx_rows = active.subarray(0, score.count);
      Object.assign(feeds, { cached_k: score.cached.k, cached_v: score.cached.v });
    }
    for (let l = from; l < to; l++) {
      feeds[`cache_k_${l}`] = cache.k[l - from];
      feeds[`cache_v_${l}`] = cache.v[l - from];
    }
    const out = await this.runner.runStack(stack, feeds, ints);
    return {
      ...this.runner.layerOutputs(out, from, to),
      logits: out.logits?.data as Float32Array | undefined,
      hidden: out.hidden,
      dev: out.dev?.data as Float32Array | undefined,
    };
  }
}
