"""PyTorch anchor for `npm run bench:gpu`: the same random Llama shape on the same card, through
transformers (sdpa attention), nothing downloaded. Prints one JSON object on stdout.

  python3 bench/torch_anchor.py [--reps N] [--quick]

Measures, medians of CUDA-synchronised wall times:
  fullPrefill4x512   prefill of 4x512 context + 32 question tokens (2,081 with BOS), fp32 and bf16
  decode2048         greedy decode steps after a 2,048-token prompt, fp32 (KV cache, eager loop)
  precompute         64 chunks x (BOS + 512) in one batch, fp32 and bf16; tok/s counts chunk tokens
"""

import argparse
import json
import statistics
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPE = dict(
    hidden_size=768,
    intermediate_size=2048,
    num_hidden_layers=12,
    num_attention_heads=12,
    num_key_value_heads=4,
    vocab_size=32000,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)


def timed(fn, reps):
    fn()  # warm up (kernel selection, allocator)
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def model_in(dtype):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE))  # transformers picks sdpa attention where available
    return model.to(device="cuda", dtype=dtype).eval()


@torch.inference_mode()
def prefill_ms(model, tokens, reps, batch=1):
    ids = torch.randint(3, SHAPE["vocab_size"], (batch, tokens), device="cuda")
    return timed(lambda: model(ids, use_cache=True, logits_to_keep=1), reps)


@torch.inference_mode()
def decode_tok_per_s(model, context, steps):
    ids = torch.randint(3, SHAPE["vocab_size"], (1, context), device="cuda")
    out = model(ids, use_cache=True, logits_to_keep=1)
    past = out.past_key_values
    nxt = out.logits[:, -1:].argmax(-1)
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(nxt, past_key_values=past, use_cache=True)
        past = out.past_key_values
        nxt = out.logits[:, -1:].argmax(-1)
        nxt.item()  # the token must reach the host, as it does for a sampler
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times[2:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    args = ap.parse_args()
    reps = 3 if args.quick else args.reps
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device"}))
        return 1
    res = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__}
    import transformers

    res["transformers"] = transformers.__version__
    prompt = 1 + 4 * 512 + 32
    chunks, chunk = 64, 512
    for name, dtype in (("Fp32", torch.float32), ("Bf16", torch.bfloat16)):
        model = model_in(dtype)
        res["attention"] = getattr(model.config, "_attn_implementation", "unknown")
        res[f"fullPrefill4x512{name}Ms"] = prefill_ms(model, prompt, reps)
        ms = prefill_ms(model, chunk + 1, max(3, reps // 2), batch=chunks)
        res[f"precompute{name}TokPerS"] = chunks * chunk / ms * 1000
        if dtype == torch.float32:
            res["decode2048Fp32TokPerS"] = decode_tok_per_s(model, 2048, 32 if args.quick else 64)
        del model
        torch.cuda.empty_cache()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
