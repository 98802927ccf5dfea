import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelLoadError, UnsupportedModelError } from '../../errors.js';
import { fingerprintModel } from '../fingerprint.js';
import { Llama2cTokenizer } from '../tokenizers/llama2c.js';
import type { LayerWeights, LoadedModel, ModelConfig, ModelWeights } from '../types.js';
import { heldWeight, type Weight } from '../weights/weight.js';

/** Finds the checkpoint and tokenizer in a folder such as models/stories260K. */
export async function findLlama2cFiles(
  dir: string,
): Promise<{ checkpoint: string; tokenizer: string } | null> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return null;
  }
  const tokenizer = names.find((n) => /^tok.*\.bin$/.test(n)) ?? names.find((n) => n === 'tokenizer.bin');
  const checkpoint = names.find((n) => n.endsWith('.bin') && n !== tokenizer && !n.startsWith('tok'));
  return tokenizer && checkpoint
    ? { checkpoint: join(dir, checkpoint), tokenizer: join(dir, tokenizer) }
    : null;
}

/** The 7 int32 header fields of a llama2.c checkpoint, checked. */
function parseHeader(buf: Buffer, source: string) {
  if (buf.length < 28) throw new ModelLoadError(`${source}: too short for a llama2.c header`);
  const [dim, hidden, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = Array.from({ length: 7 }, (_, i) =>
    buf.readInt32LE(i * 4),
  );
  const shared = rawVocab > 0;
  const vocab = Math.abs(rawVocab);
  if ([dim, hidden, nLayers, nHeads, nKvHeads, vocab, seqLen].some((v) => v <= 0) || dim % nHeads !== 0) {
    throw new ModelLoadError(
      `${source}: implausible header ${[dim, hidden, nLayers, nHeads, nKvHeads, rawVocab]}`,
    );
  }
  if (nHeads % nKvHeads !== 0)
    throw new UnsupportedModelError(`${source}: heads ${nHeads} not a multiple of kv heads`);
  return { dim, hidden, nLayers, nHeads, nKvHeads, vocab, seqLen, shared };
}

/** Parses llama2.c's legacy checkpoint: 7 int32 header fields, then fp32 arrays in a fixed order. */
export function parseLlama2cCheckpoint(
  buf: Buffer,
  source: string,
): { config: ModelConfig; weights: ModelWeights } {
  const { dim, hidden, nLayers, nHeads, nKvHeads, vocab, seqLen, shared } = parseHeader(buf, source);
  const headDim = dim / nHeads;
  const kvDim = nKvHeads * headDim;
  let off = 28;
  const takeArray = (n: number, what: string): Float32Array => {
    if (off + n * 4 > buf.length) throw new ModelLoadError(`${source}: truncated while reading ${what}`);
    // Copy into an aligned buffer: Buffer offsets need not be 4-byte aligned.
    const a = new Float32Array(n);
    new Uint8Array(a.buffer).set(buf.subarray(off, off + n * 4));
    off += n * 4;
    return a;
  };
  const take = (shape: number[], what: string): Weight =>
    heldWeight(takeArray(shape[0] * (shape[1] ?? 1), what), shape);
  const perLayer = (shape: number[], what: string) => {
    const n = shape[0] * (shape[1] ?? 1);
    const all = takeArray(n * nLayers, what);
    return Array.from({ length: nLayers }, (_, l) => heldWeight(all.slice(l * n, (l + 1) * n), shape));
  };
  const embedTokens = take([vocab, dim], 'token_embedding');
  const rmsAtt = perLayer([dim], 'rms_att');
  const wq = perLayer([dim, dim], 'wq');
  const wk = perLayer([kvDim, dim], 'wk');
  const wv = perLayer([kvDim, dim], 'wv');
  const wo = perLayer([dim, dim], 'wo');
  const rmsFfn = perLayer([dim], 'rms_ffn');
  const w1 = perLayer([hidden, dim], 'w1');
  const w2 = perLayer([dim, hidden], 'w2');
  const w3 = perLayer([hidden, dim], 'w3');
  const finalNorm = take([dim], 'rms_final');
  off += seqLen * headDim * 4; // legacy freq_cis_real + freq_cis_imag tables, unused
  const lmHead = shared ? embedTokens : take([vocab, dim], 'wcls');
  const layers: LayerWeights[] = Array.from({ length: nLayers }, (_, l) => ({
    attnNorm: rmsAtt[l],
    wq: wq[l],
    wk: wk[l],
    wv: wv[l],
    wo: wo[l],
    bq: null,
    bk: null,
    bv: null,
    mlpNorm: rmsFfn[l],
    wGate: w1[l],
    wUp: w3[l],
    wDown: w2[l],
  }));
  const config: ModelConfig = {
    architecture: 'llama2c',
    hiddenSize: dim,
    intermediateSize: hidden,
    numLayers: nLayers,
    numHeads: nHeads,
    numKvHeads: nKvHeads,
    headDim,
    vocabSize: vocab,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeLayout: 'interleaved',
    ropeScaling: null,
    attentionBias: false,
    tieWordEmbeddings: shared,
    maxPositionEmbeddings: seqLen,
    bosTokenId: 1,
    eosTokenIds: [2, 1],
    weightDtype: 'float32',
  };
  return { config, weights: { embedTokens, layers, finalNorm, lmHead } };
}

export async function loadLlama2cModel(dir: string): Promise<LoadedModel> {
  const files = await findLlama2cFiles(dir);
  if (!files) throw new ModelLoadError(`${dir}: no llama2.c checkpoint (*.bin) with a tok*.bin tokenizer`);
  const buf = await readFile(files.checkpoint);
  const { config, weights } = parseLlama2cCheckpoint(buf, files.checkpoint);
  const tokenizer = await Llama2cTokenizer.load(files.tokenizer, config.vocabSize);
  return { config, weights, tokenizer, fingerprint: fingerprintModel(config, weights), source: dir };
}
