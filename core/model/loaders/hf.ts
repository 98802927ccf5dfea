/**
 * Loads a Hugging Face checkpoint directory (config.json, model.safetensors or its shards, tokenizer.json,
 * optional tokenizer_config.json and generation_config.json) into a LoadedModel whose weights are read
 * from the checkpoint when the engine builds its graphs.
 */
import path from 'node:path';
import { ModelLoadError, UnsupportedModelError } from '../../errors.js';
import {
  findArchitecture,
  type ConfigFallbacks,
  type HfConfigJson,
  type TensorNames,
} from '../architectures/registry.js';
import { fingerprintModel } from '../fingerprint.js';
import { LoadCache, type LoadCacheSetting } from '../weights/load-cache.js';
import { SafetensorsCheckpoint, type SafetensorsDtype } from '../weights/safetensors.js';
import {
  HfTokenizer,
  buildJsTokenizer,
  configTokenId,
  readJson,
  readTokenizerFiles,
} from '../tokenizers/hf.js';
import type { LayerWeights, LoadedModel, ModelConfig, ModelWeights } from '../types.js';
import { fileWeight, type Weight } from '../weights/weight.js';

const STORED_DTYPE: Partial<Record<SafetensorsDtype, ModelConfig['weightDtype']>> = {
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
};

function asObject(v: unknown, file: string): HfConfigJson {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ModelLoadError(`${file}: not a JSON object`);
  return v as HfConfigJson;
}

function eosList(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

export interface HfLoadOptions {
  /** Where the fingerprint and quantized weights are cached between starts (see weights/load-cache.ts). */
  weightCache?: LoadCacheSetting;
  /** Smallest checkpoint (bytes, all files) that is cached; default LOAD_CACHE_MIN_BYTES. */
  weightCacheMinBytes?: number;
}

export async function loadHfModel(dir: string, opts: HfLoadOptions = {}): Promise<LoadedModel> {
  const root = path.resolve(dir);
  const configFile = path.join(root, 'config.json');
  const configJson = asObject(await readJson(configFile, true), configFile);
  const spec = findArchitecture(configJson);

  const { tokenizerJson, config: tokConfig, source: tokSource } = await readTokenizerFiles(root);
  const jsTok = buildJsTokenizer(tokenizerJson, tokConfig, tokSource);
  const eosFromTokenizer = configTokenId(jsTok, tokConfig, 'eos_token');
  const fallbacks: ConfigFallbacks = {
    bosTokenId: configTokenId(jsTok, tokConfig, 'bos_token'),
    eosTokenIds: eosFromTokenizer === undefined ? undefined : [eosFromTokenizer],
  };
  const config = spec.parseConfig(configJson, fallbacks);

  // generation_config.json may list more stop tokens (e.g. Llama 3 instruct's <|eot_id|>).
  const genFile = path.join(root, 'generation_config.json');
  const gen = await readJson(genFile, false);
  if (gen !== undefined) {
    const extra = eosList(asObject(gen, genFile).eos_token_id);
    config.eosTokenIds = [...new Set([...config.eosTokenIds, ...extra])];
  }

  const checkpoint = await SafetensorsCheckpoint.open(root);
  let weights: ModelWeights;
  let cache: LoadCache | null;
  try {
    const stored = STORED_DTYPE[checkpoint.info(spec.tensorNames.embedTokens).dtype];
    // The stored tensors, not the config's dtype field, say what precision the weights really have.
    if (stored) config.weightDtype = stored;
    cache = LoadCache.open(root, checkpoint.paths(), opts.weightCache, opts.weightCacheMinBytes);
    weights = checkpointWeights(checkpoint, config, spec.tensorNames, cache);
  } finally {
    await checkpoint.close();
  }

  const tokenizer = new HfTokenizer(jsTok, tokConfig, {
    bosTokenId: config.bosTokenId,
    eosTokenIds: config.eosTokenIds,
  });
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new ModelLoadError(
      `${tokSource}: tokenizer has ${tokenizer.vocabSize} ids but the model's vocab_size is ${config.vocabSize}`,
    );
  }
  for (const id of [config.bosTokenId, ...config.eosTokenIds]) {
    if (id >= config.vocabSize) {
      throw new ModelLoadError(
        `${configFile}: special token id ${id} is outside vocab_size ${config.vocabSize}`,
      );
    }
  }
  const compute = () => fingerprintModel(config, weights);
  const fingerprint = cache ? cache.fingerprint(JSON.stringify(config), compute) : compute();
  cache?.bind(fingerprint);
  return { config, weights, tokenizer, fingerprint, source: root };
}

/**
 * Handles on the checkpoint's tensors, shard by shard as the index maps them: shapes and dtypes are checked
 * here, values are read when a graph needs them (see weights/weight.ts), so nothing is held but the token
 * embeddings the engine looks rows up in.
 */
function checkpointWeights(
  ckpt: SafetensorsCheckpoint,
  c: ModelConfig,
  names: TensorNames,
  cache: LoadCache | null,
): ModelWeights {
  const read = (name: string, shape: number[]): Weight => {
    const info = ckpt.info(name);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ModelLoadError(
        `${ckpt.dir}: tensor '${name}' has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`,
      );
    }
    const dtype = STORED_DTYPE[info.dtype];
    if (!dtype) {
      throw new ModelLoadError(
        `${name}: dtype ${info.dtype} is not supported (only F32, F16 and BF16 weights)`,
      );
    }
    return fileWeight(info.file, info.begin, dtype, shape, cache);
  };
  const h = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const embedTokens = read(names.embedTokens, [c.vocabSize, h]);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const n = names.layer(i);
    const layer: LayerWeights = {
      attnNorm: read(n.attnNorm, [h]),
      wq: read(n.wq, [qDim, h]),
      wk: read(n.wk, [kvDim, h]),
      wv: read(n.wv, [kvDim, h]),
      wo: read(n.wo, [h, qDim]),
      bq: c.attentionBias ? read(n.bq, [qDim]) : null,
      bk: c.attentionBias ? read(n.bk, [kvDim]) : null,
      bv: c.attentionBias ? read(n.bv, [kvDim]) : null,
      mlpNorm: read(n.mlpNorm, [h]),
      wGate: read(n.wGate, [c.intermediateSize, h]),
      wUp: read(n.wUp, [c.intermediateSize, h]),
      wDown: read(n.wDown, [h, c.intermediateSize]),
    };
    if (c.attentionBias && ckpt.has(n.bo)) {
      const bo = read(n.bo, [h]).f32();
      if (bo.some((x) => x !== 0)) {
        throw new UnsupportedModelError(
          `attention_bias=true with a non-zero o_proj bias ('${n.bo}') is not supported (q/k/v biases only)`,
        );
      }
    }
    layers.push(layer);
  }
  const finalNorm = read(names.finalNorm, [h]);
  const lmHead = c.tieWordEmbeddings ? embedTokens : read(names.lmHead, [c.vocabSize, h]);
  return { embedTokens, layers, finalNorm, lmHead };
}
