/**
 * The Hugging Face loader against the transformers-made fixtures, without the engine: configs, tokenizer ids,
 * and logits of a float64 oracle forward pass over the loaded weights compared with transformers' logits.
 */
import { cp, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelLoadError, UnsupportedModelError } from '../../core/errors.js';
import { inverseFrequencies } from '../../core/kv/rope.js';
import { loadModel } from '../../core/model/load.js';
import { loadHfModel } from '../../core/model/loaders/hf.js';
import { SafetensorsCheckpoint } from '../../core/model/weights/safetensors.js';
import {
  HF_FIXTURES_DIR,
  HF_FIXTURE_NAMES,
  maxAbsDiff,
  oracleInvFreq,
  oracleLogits,
  readHfFixture,
} from '../helpers/hf-fixtures.js';
import { STORIES_DIR } from '../helpers/models.js';
import { f32Bytes, safetensorsBytes, type TensorSpec } from '../helpers/safetensors-writer.js';

describe.each(HF_FIXTURE_NAMES)('HF fixture %s', (name) => {
  const fx = readHfFixture(name);

  it('loads with the stored dtype, tied heads shared, and a stable fingerprint', async () => {
    const m = await loadHfModel(fx.dir);
    expect(m.config.weightDtype).toBe(fx.ref.stored_dtype);
    expect(m.config.vocabSize).toBe(fx.ref.vocab_size);
    expect(m.source).toBe(fx.dir);
    expect(m.weights.layers).toHaveLength(m.config.numLayers);
    expect(m.weights.lmHead === m.weights.embedTokens).toBe(m.config.tieWordEmbeddings);
    expect(m.weights.layers[0].bq !== null).toBe(m.config.attentionBias);
    if (m.config.attentionBias) expect(m.weights.layers[0].bq!.f32().some((x) => x !== 0)).toBe(true);
    expect(m.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect((await loadHfModel(fx.dir)).fingerprint).toBe(m.fingerprint);
  });

  it('tokenizes like Python tokenizers and transformers (no BOS), decodes skipping special tokens', async () => {
    const { tokenizer } = await loadHfModel(fx.dir);
    expect(tokenizer.bosTokenId).toBe(fx.ref.bos_token_id);
    expect(tokenizer.eosTokenIds).toContain(fx.ref.eos_token_id);
    expect(tokenizer.vocabSize).toBe(320);
    for (const c of fx.ref.tokenizer_cases) {
      const ids = tokenizer.encode(c.text);
      expect(ids, c.text).toEqual(c.ids);
      if (c.transformers_ids) expect(ids, c.text).toEqual(c.transformers_ids);
      expect(c.ids_with_special_tokens[0]).toBe(tokenizer.bosTokenId);
      expect(tokenizer.decode(ids), c.text).toBe(c.decoded);
    }
    expect(tokenizer.decode([])).toBe('');
    const c = fx.ref.tokenizer_cases[0];
    expect(tokenizer.decode([...c.ids, 5000, -1])).toBe(c.decoded);
    expect(tokenizer.decode([fx.ref.bos_token_id, ...c.ids, fx.ref.eos_token_id])).toBe(c.decoded);
  });

  it('RoPE frequencies match transformers (oracle and engine tables)', async () => {
    const { config } = await loadHfModel(fx.dir);
    expect(fx.ref.inv_freq).not.toBeNull();
    const ref = fx.ref.inv_freq!;
    // transformers keeps inv_freq in float32: compare at float32 precision.
    const rel = (a: ArrayLike<number>) => Math.max(...ref.map((r, i) => Math.abs(a[i] - r) / r));
    expect(rel(oracleInvFreq(config))).toBeLessThan(1e-6);
    expect(rel(inverseFrequencies(config))).toBeLessThan(1e-6);
  });

  it('a float64 oracle over the loaded weights reproduces transformers fp32 logits (<= 1e-4)', async () => {
    const m = await loadHfModel(fx.dir);
    let worst = 0;
    fx.ref.prompts.forEach((p, i) => {
      worst = Math.max(worst, maxAbsDiff(oracleLogits(m, p), fx.fp32[i]));
    });
    expect(worst).toBeLessThanOrEqual(1e-4);
    // The reference's own fp32 rounding, measured against float64 in Python, bounds what is reachable.
    expect(worst).toBeLessThanOrEqual(2 * fx.ref.logits_fp32.max_abs_diff_vs_fp64 + 1e-6);
  });
});

describe('fixtures are distinct models', () => {
  it('have distinct fingerprints', async () => {
    const fps = await Promise.all(
      HF_FIXTURE_NAMES.map(async (n) => (await loadHfModel(readHfFixture(n).dir)).fingerprint),
    );
    expect(new Set(fps).size).toBe(fps.length);
  });
});

describe('loader failures', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'hf-loader-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  const copyFixture = async (name: string, as: string) => {
    const dir = path.join(tmp, as);
    await cp(path.join(HF_FIXTURES_DIR, name), dir, { recursive: true });
    return dir;
  };
  const patchConfig = async (dir: string, patch: Record<string, unknown>) => {
    const file = path.join(dir, 'config.json');
    await writeFile(file, JSON.stringify({ ...JSON.parse(await readFile(file, 'utf8')), ...patch }));
  };
  /** Rewrite dir/model.safetensors as F32 with `extra` tensors added. */
  const addTensors = async (dir: string, extra: Record<string, Float32Array>) => {
    const ck = await SafetensorsCheckpoint.open(dir);
    const tensors: Record<string, TensorSpec> = {};
    for (const n of ck.names()) {
      const t = await ck.read(n);
      tensors[n] = { dtype: 'F32', shape: t.shape, bytes: f32Bytes(t.data) };
    }
    await ck.close();
    for (const [n, v] of Object.entries(extra))
      tensors[n] = { dtype: 'F32', shape: [v.length], bytes: f32Bytes(v) };
    await writeFile(path.join(dir, 'model.safetensors'), safetensorsBytes(tensors));
  };

  it('missing tokenizer.json', async () => {
    const dir = await copyFixture('llama-tied', 'no-tok');
    await rm(path.join(dir, 'tokenizer.json'));
    await expect(loadHfModel(dir)).rejects.toBeInstanceOf(ModelLoadError);
  });

  it('missing config.json, and weights missing', async () => {
    await expect(loadHfModel(path.join(tmp, 'nothing-here'))).rejects.toBeInstanceOf(ModelLoadError);
    const dir = await copyFixture('llama-tied', 'no-weights');
    await rm(path.join(dir, 'model.safetensors'));
    await expect(loadHfModel(dir)).rejects.toThrow(/no model.safetensors/);
  });

  it('truncated weights', async () => {
    const dir = await copyFixture('llama-tied', 'trunc');
    await truncate(path.join(dir, 'model.safetensors'), 100_000);
    await expect(loadHfModel(dir)).rejects.toThrow(/truncated/);
  });

  it('config and tensor shapes disagree', async () => {
    const dir = await copyFixture('llama-tied', 'shape');
    await patchConfig(dir, { intermediate_size: 96 });
    await expect(loadHfModel(dir)).rejects.toThrow(/has shape \[64, 32\], expected \[96, 32\]/);
  });

  it('an untied config whose checkpoint has no lm_head', async () => {
    const dir = await copyFixture('llama-tied', 'untied');
    await patchConfig(dir, { tie_word_embeddings: false });
    await expect(loadHfModel(dir)).rejects.toThrow(/missing tensor 'lm_head.weight'/);
  });

  it('an unsupported option in config.json', async () => {
    const dir = await copyFixture('mistral', 'window');
    await patchConfig(dir, { sliding_window: 16 });
    await expect(loadHfModel(dir)).rejects.toBeInstanceOf(UnsupportedModelError);
  });

  it('Llama attention_bias: q/k/v biases load; a non-zero o_proj bias is refused', async () => {
    const dir = await copyFixture('llama-tied', 'bias');
    await patchConfig(dir, { attention_bias: true });
    await expect(loadHfModel(dir)).rejects.toThrow(/missing tensor 'model.layers.0.self_attn.q_proj.bias'/);
    const biases: Record<string, Float32Array> = {};
    for (const l of [0, 1]) {
      for (const p of ['q', 'k', 'v'])
        biases[`model.layers.${l}.self_attn.${p}_proj.bias`] = new Float32Array(32).fill(0.5);
      biases[`model.layers.${l}.self_attn.o_proj.bias`] = new Float32Array(32);
    }
    await addTensors(dir, biases);
    const m = await loadHfModel(dir);
    expect(m.config.attentionBias).toBe(true);
    expect(m.weights.layers[1].bv!.f32()[3]).toBe(0.5);
    biases['model.layers.1.self_attn.o_proj.bias'] = new Float32Array(32).fill(0.1);
    await addTensors(dir, biases);
    await expect(loadHfModel(dir)).rejects.toThrow(UnsupportedModelError);
    await expect(loadHfModel(dir)).rejects.toThrow(/o_proj bias/);
  });
});

describe('loadModel dispatch', () => {
  it('loads a Hugging Face folder by path and by name on the search path', async () => {
    const byPath = await loadModel(path.join(HF_FIXTURES_DIR, 'qwen2-bias'));
    expect(byPath.config.architecture).toBe('qwen2');
    const byName = await loadModel('mistral', {
      searchPath: ['/nonexistent', HF_FIXTURES_DIR],
      allowDownload: false,
    });
    expect(byName.config.architecture).toBe('mistral');
    expect(byName.source).toBe(path.join(HF_FIXTURES_DIR, 'mistral'));
  });

  it('loads a llama2.c folder', async () => {
    const m = await loadModel(STORIES_DIR);
    expect(m.config.ropeLayout).toBe('interleaved');
  });

  it('refuses a folder of neither format', async () => {
    await expect(loadModel(HF_FIXTURES_DIR)).rejects.toThrow(/neither a Hugging Face model folder/);
  });
});
