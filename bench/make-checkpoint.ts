import { closeSync, copyFileSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Writes a randomly initialised Llama checkpoint as Hugging Face lays it out — config.json, bf16
 * safetensors shards with model.safetensors.index.json, cbqa-3M's tokenizer files — without holding it:
 * each tensor is generated and written on its own. For the scale measurements on the CPU (an 8B shape in
 * 24 GiB, a 2.3 GB untied head) where transformers is not at hand.
 *
 *   node dist/bench/make-checkpoint.js OUT_DIR SHAPE [--shard-gb N]
 *
 * SHAPE: 125M, 1B, 8B (as bench/make_scale_checkpoints.py makes them), head140k (2 layers of the 8B shape
 * under an untied 140,000 × 4096 head), or a JSON object of LlamaConfig fields.
 */

const PRESETS: Record<string, Record<string, number | boolean>> = {
  '125M': {
    hidden_size: 768,
    intermediate_size: 2048,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    num_key_value_heads: 4,
    vocab_size: 32000,
    tie_word_embeddings: false,
  },
  '1B': {
    hidden_size: 2048,
    intermediate_size: 8192,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    vocab_size: 128256,
    tie_word_embeddings: true,
  },
  '8B': {
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    vocab_size: 128256,
    tie_word_embeddings: false,
  },
  head140k: {
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 2,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    vocab_size: 140000,
    tie_word_embeddings: false,
  },
};

interface Spec {
  name: string;
  shape: number[];
  /** 'ones' for norms, else uniform with this standard deviation. */
  init: 'ones' | number;
}

function tensors(c: Record<string, number | boolean>): Spec[] {
  const D = c.hidden_size as number;
  const I = c.intermediate_size as number;
  const H = c.num_attention_heads as number;
  const KV = c.num_key_value_heads as number;
  const hd = D / H;
  const specs: Spec[] = [
    { name: 'model.embed_tokens.weight', shape: [c.vocab_size as number, D], init: 0.02 },
  ];
  for (let l = 0; l < (c.num_hidden_layers as number); l++) {
    const p = `model.layers.${l}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, shape: [D], init: 'ones' },
      { name: `${p}.self_attn.q_proj.weight`, shape: [H * hd, D], init: 0.02 },
      { name: `${p}.self_attn.k_proj.weight`, shape: [KV * hd, D], init: 0.02 },
      { name: `${p}.self_attn.v_proj.weight`, shape: [KV * hd, D], init: 0.02 },
      { name: `${p}.self_attn.o_proj.weight`, shape: [D, H * hd], init: 0.02 },
      { name: `${p}.post_attention_layernorm.weight`, shape: [D], init: 'ones' },
      { name: `${p}.mlp.gate_proj.weight`, shape: [I, D], init: 0.02 },
      { name: `${p}.mlp.up_proj.weight`, shape: [I, D], init: 0.02 },
      { name: `${p}.mlp.down_proj.weight`, shape: [D, I], init: 0.02 },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [D], init: 'ones' });
  if (!c.tie_word_embeddings)
    specs.push({ name: 'lm_head.weight', shape: [c.vocab_size as number, D], init: 0.02 });
  return specs;
}

/** bf16 bits of a tensor: ones, or uniform values of the given std from a xorshift stream. */
function values(spec: Spec, state: { s: number }): Uint16Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const out = new Uint16Array(n);
  if (spec.init === 'ones') return out.fill(0x3f80);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const scale = (spec.init * Math.sqrt(3) * 2) / 2 ** 32;
  const offset = spec.init * Math.sqrt(3);
  let s = state.s;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    f[0] = (s >>> 0) * scale - offset;
    out[i] = u[0] >>> 16;
  }
  state.s = s;
  return out;
}

function writeShard(file: string, specs: Spec[], state: { s: number }): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of specs) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 2;
    header[t.name] = { dtype: 'BF16', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const fd = openSync(file, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeSync(fd, len);
    writeSync(fd, json);
    for (const t of specs) {
      const v = values(t, state);
      writeSync(fd, new Uint8Array(v.buffer));
    }
  } finally {
    closeSync(fd);
  }
}

export function makeCheckpoint(outDir: string, shape: string, shardBytes = 2 * 1024 ** 3): string {
  const cfg = PRESETS[shape] ?? (JSON.parse(shape) as Record<string, number | boolean>);
  mkdirSync(outDir, { recursive: true });
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    ...cfg,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: 500000.0,
    hidden_act: 'silu',
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'bfloat16',
  };
  writeFileSync(path.join(outDir, 'config.json'), JSON.stringify(config, null, 2));
  const shards: Spec[][] = [[]];
  let size = 0;
  for (const t of tensors(cfg)) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 2;
    if (size > 0 && size + bytes > shardBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(t);
    size += bytes;
  }
  const weightMap: Record<string, string> = {};
  const state = { s: 0x9e3779b9 };
  let total = 0;
  shards.forEach((specs, i) => {
    const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    writeShard(path.join(outDir, name), specs, state);
    for (const t of specs) {
      weightMap[t.name] = name;
      total += t.shape.reduce((a, b) => a * b, 1) * 2;
    }
  });
  writeFileSync(
    path.join(outDir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
  );
  const tokenizer = fileURLToPath(new URL('../../models/cbqa-3M/', import.meta.url));
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    copyFileSync(path.join(tokenizer, f), path.join(outDir, f));
  return `${outDir}: ${shape}, ${shards.length} shards, ${(total / 2 ** 30).toFixed(2)} GiB of bf16 weights`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const [out, shape, flag, gb] = process.argv.slice(2);
  if (!out || !shape) {
    console.error(
      'usage: node dist/bench/make-checkpoint.js OUT_DIR 125M|1B|8B|head140k|<json> [--shard-gb N]',
    );
    process.exit(2);
  }
  const shard = flag === '--shard-gb' ? Number(gb) * 1024 ** 3 : undefined;
  console.log(makeCheckpoint(out, shape, shard));
}
