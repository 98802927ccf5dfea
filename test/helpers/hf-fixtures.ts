/**
 * Helpers for the Hugging Face parity fixtures in test/fixtures/hf (see its README): reading reference.json
 * and its logits files, and a plain float64 forward pass of a LoadedModel that serves as an engine-free
 * oracle for the loader (any wrong tensor mapping, transpose or RoPE detail shows up against HF's logits).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LayerWeights, LoadedModel, ModelConfig } from '../../core/model/types.js';

export const HF_FIXTURES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/hf');

export const HF_FIXTURE_NAMES = [
  'llama-gqa',
  'llama-tied',
  'qwen2-bias',
  'llama3-rope',
  'llama-fp16',
  'llama-bf16',
  'mistral',
] as const;

export interface TokenizerCase {
  text: string;
  ids: number[];
  ids_with_special_tokens: number[];
  decoded: string;
  transformers_ids?: number[];
  transformers_decoded?: string;
}

export interface HfReference {
  name: string;
  description: string;
  model_class: string;
  stored_dtype: 'float32' | 'float16' | 'bfloat16';
  vocab_size: number;
  /** Which tokenizer.json style: byte-level BPE (Llama 3 split regex) or SentencePiece-style with byte fallback. */
  tokenizer: 'bytelevel' | 'sp-legacy' | 'sp-metaspace';
  bos_token_id: number;
  eos_token_id: number;
  prompts: number[][];
  logits_fp32: { file: string; max_abs_diff_vs_fp64: number; max_abs_logit: number };
  logits_native: null | {
    file: string;
    computed_in: string;
    device: string;
    max_abs_diff_vs_fp32: number;
    max_abs_diff_vs_fp64: number;
  };
  inv_freq: number[] | null;
  tokenizer_cases: TokenizerCase[];
  versions: Record<string, string | null>;
}

export interface HfFixture {
  dir: string;
  ref: HfReference;
  /** Reference logits per prompt, [len * vocab] each. */
  fp32: Float32Array[];
  native: Float32Array[] | null;
}

function splitLogits(file: string, prompts: number[][], vocab: number): Float32Array[] {
  const buf = readFileSync(file);
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const total = prompts.reduce((a, p) => a + p.length, 0);
  if (all.length !== total * vocab)
    throw new Error(`${file}: ${all.length} floats, expected ${total * vocab}`);
  const out: Float32Array[] = [];
  let off = 0;
  for (const p of prompts) {
    out.push(all.subarray(off, off + p.length * vocab));
    off += p.length * vocab;
  }
  return out;
}

export function readHfFixture(name: string): HfFixture {
  const dir = path.join(HF_FIXTURES_DIR, name);
  const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as HfReference;
  const fp32 = splitLogits(path.join(dir, ref.logits_fp32.file), ref.prompts, ref.vocab_size);
  const native = ref.logits_native
    ? splitLogits(path.join(dir, ref.logits_native.file), ref.prompts, ref.vocab_size)
    : null;
  return { dir, ref, fp32, native };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d; // NaN propagates as a failure
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Float64 oracle

/** Llama 3 scaled (or plain) inverse frequencies, as in transformers' _compute_llama3_parameters. */
export function oracleInvFreq(c: ModelConfig): number[] {
  const half = c.headDim / 2;
  const inv = Array.from({ length: half }, (_, i) => 1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim));
  const s = c.ropeScaling;
  if (!s) return inv;
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth =
      (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

function matvec(w: Float32Array, x: Float64Array, rows: number, cols: number, bias?: Float32Array | null) {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = bias ? bias[r] : 0;
    const o = r * cols;
    for (let c = 0; c < cols; c++) s += w[o + c] * x[c];
    y[r] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * w[i]);
}

/** Rotate each head of `v` ([heads * headDim]) in HF's half layout: pairs (i, i + d/2). */
function rope(v: Float64Array, heads: number, d: number, pos: number, inv: number[]): void {
  const half = d / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      const a = pos * inv[i];
      const cos = Math.cos(a);
      const sin = Math.sin(a);
      const x0 = v[h * d + i];
      const x1 = v[h * d + i + half];
      v[h * d + i] = x0 * cos - x1 * sin;
      v[h * d + i + half] = x1 * cos + x0 * sin;
    }
  }
}

/** A layer's weights read once as fp32 arrays. */
interface Fp32Layer {
  attnNorm: Float32Array;
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  bq: Float32Array | null;
  bk: Float32Array | null;
  bv: Float32Array | null;
  mlpNorm: Float32Array;
  wGate: Float32Array;
  wUp: Float32Array;
  wDown: Float32Array;
}

function fp32Layer(l: LayerWeights): Fp32Layer {
  return {
    attnNorm: l.attnNorm.f32(),
    wq: l.wq.f32(),
    wk: l.wk.f32(),
    wv: l.wv.f32(),
    wo: l.wo.f32(),
    bq: l.bq?.f32() ?? null,
    bk: l.bk?.f32() ?? null,
    bv: l.bv?.f32() ?? null,
    mlpNorm: l.mlpNorm.f32(),
    wGate: l.wGate.f32(),
    wUp: l.wUp.f32(),
    wDown: l.wDown.f32(),
  };
}

/** Logits at every position of `ids` ([ids.length * vocab]), computed naively in float64. */
export function oracleLogits(model: LoadedModel, ids: readonly number[]): Float64Array {
  const c = model.config;
  const w = model.weights;
  const D = c.hiddenSize;
  const H = c.numHeads;
  const KV = c.numKvHeads;
  const hd = c.headDim;
  const group = H / KV;
  const inv = oracleInvFreq(c);
  const T = ids.length;
  const embed = w.embedTokens.f32();
  let x: Float64Array[] = ids.map((id) => Float64Array.from(embed.subarray(id * D, (id + 1) * D)));
  for (const held of w.layers) {
    const l = fp32Layer(held);
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    const qs: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const n = rmsNorm(x[t], l.attnNorm, c.rmsNormEps);
      const q = matvec(l.wq, n, H * hd, D, l.bq);
      const k = matvec(l.wk, n, KV * hd, D, l.bk);
      rope(q, H, hd, t, inv);
      rope(k, KV, hd, t, inv);
      qs.push(q);
      ks.push(k);
      vs.push(matvec(l.wv, n, KV * hd, D, l.bv));
    }
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const attn = new Float64Array(H * hd);
      for (let h = 0; h < H; h++) {
        const kh = Math.floor(h / group);
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let j = 0; j <= t; j++) {
          let s = 0;
          for (let i = 0; i < hd; i++) s += qs[t][h * hd + i] * ks[j][kh * hd + i];
          scores[j] = s / Math.sqrt(hd);
          max = Math.max(max, scores[j]);
        }
        let sum = 0;
        for (let j = 0; j <= t; j++) sum += scores[j] = Math.exp(scores[j] - max);
        for (let j = 0; j <= t; j++) {
          const p = scores[j] / sum;
          for (let i = 0; i < hd; i++) attn[h * hd + i] += p * vs[j][kh * hd + i];
        }
      }
      const o = matvec(l.wo, attn, D, H * hd);
      const h1 = x[t].map((v, i) => v + o[i]);
      const n2 = rmsNorm(h1, l.mlpNorm, c.rmsNormEps);
      const g = matvec(l.wGate, n2, c.intermediateSize, D);
      const u = matvec(l.wUp, n2, c.intermediateSize, D);
      const act = g.map((v, i) => (v / (1 + Math.exp(-v))) * u[i]);
      const down = matvec(l.wDown, act, D, c.intermediateSize);
      next.push(h1.map((v, i) => v + down[i]));
    }
    x = next;
  }
  const out = new Float64Array(T * c.vocabSize);
  for (let t = 0; t < T; t++) {
    const head = matvec(w.lmHead.f32(), rmsNorm(x[t], w.finalNorm.f32(), c.rmsNormEps), c.vocabSize, D);
    out.set(head, t * c.vocabSize);
  }
  return out;
}
