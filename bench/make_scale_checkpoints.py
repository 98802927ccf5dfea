"""Checkpoints and PyTorch anchors for `npm run bench:gpu -- scale` (bench/gpu-scale.ts).

  python3 bench/make_scale_checkpoints.py OUT_DIR SHAPE... [--reps N] [--tokenizer DIR]

For each SHAPE (125M, 1B, 8B): a randomly initialised LlamaForCausalLM of that shape, created on the GPU
in bf16 and written with `save_pretrained` as bf16 safetensors shards plus their index (nothing is
downloaded), with the tokenizer files of --tokenizer beside it, into OUT_DIR/SHAPE (kept if present); then
the same model's PyTorch bf16 timings on the same card (sdpa attention), medians of CUDA-synchronised walls:
  torchBf16Ms       prefill of BOS + 4x512 context + 32 question tokens (2,081), logits of the last row
  torchDecodeTokPerS  greedy decode steps after a 2,048-token prompt (KV cache, eager loop)
Prints one JSON object: {card, torch, transformers, shapes: {SHAPE: {...}}}.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

# The shapes of the issue: the 124.7M benchmark Llama, Llama-3.2-1B, Llama-3.1-8B.
SHAPES = {
    "125M": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                 num_key_value_heads=4, vocab_size=32000, tie_word_embeddings=False),
    "1B": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "8B": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
}
COMMON = dict(max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0, bos_token_id=1,
              eos_token_id=2, hidden_act="silu")


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


@torch.inference_mode()
def decode_tok_per_s(model, vocab, context, steps):
    ids = torch.randint(3, vocab, (1, context), device="cuda")
    out = model(ids, use_cache=True, logits_to_keep=1)
    past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(nxt, past_key_values=past, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        nxt.item()
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times[2:])


def make(out_dir, name, tokenizer_dir, reps):
    cfg = LlamaConfig(**SHAPES[name], **COMMON)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    folder = os.path.join(out_dir, name)
    t0 = time.perf_counter()
    if not os.path.exists(os.path.join(folder, "config.json")):
        model.save_pretrained(folder, max_shard_size="2GB", safe_serialization=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tokenizer_dir, f), os.path.join(folder, f))
    save_s = time.perf_counter() - t0
    vocab = cfg.vocab_size
    ids = torch.randint(3, vocab, (1, 1 + 4 * 512 + 32), device="cuda")
    with torch.inference_mode():
        prefill = timed(lambda: model(ids, use_cache=True, logits_to_keep=1), reps)
    row = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "saveS": save_s,
        "torchBf16Ms": prefill,
        "torchDecodeTokPerS": decode_tok_per_s(model, vocab, 2048, 32),
        "attention": getattr(model.config, "_attn_implementation", "unknown"),
    }
    del model
    torch.cuda.empty_cache()
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("shapes", nargs="+", choices=sorted(SHAPES))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--tokenizer", default=os.path.join(os.path.dirname(__file__), "..", "models", "cbqa-3M"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device"}))
        return 1
    import transformers

    res = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "transformers": transformers.__version__, "shapes": {}}
    for name in args.shapes:
        res["shapes"][name] = make(args.out_dir, name, args.tokenizer, args.reps)
        print(f"{name}: {json.dumps(res['shapes'][name])}", file=sys.stderr, flush=True)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
