#!/usr/bin/env python3
"""Regenerate the parity fixtures under tests/reference/cases/.

Runs the real HuggingFace implementation (FalconMambaForCausalLM / MambaForCausalLM) on CPU in
float32 over small random-weight models whose parameters are perturbed away from their init values
(so that every parameter changes the logits), saves each model with save_pretrained in the dtype of
the case, and records what libfalconmamba must reproduce:
  - all-position logits of several prompts,
  - a 24-token greedy continuation of one prompt (full-sequence forward each step, no cache).
The reference logits are computed with the *stored* weights (bf16/f16 rounded, then upcast to f32),
which is exactly the arithmetic the library does: fp32 activations and state over stored weights.

Needs torch, transformers, safetensors. Usage: python3 tests/reference/make_fixtures.py [OUTDIR]
"""
import json
import os
import shutil
import sys

import torch
import transformers
from transformers import (FalconMambaConfig, FalconMambaForCausalLM, MambaConfig,
                          MambaForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "cases")
GREEDY_STEPS = 24

# name, model kind, config overrides, stored dtype, max shard size (None = single file)
CASES = [
    ("falcon_f32_untied", "falcon_mamba",
     dict(hidden_size=64, num_hidden_layers=3, intermediate_size=128, state_size=16, conv_kernel=4,
          vocab_size=96, tie_word_embeddings=False, use_bias=False, use_conv_bias=True),
     torch.float32, None),
    ("falcon_f32_tied_odd", "falcon_mamba",
     dict(hidden_size=40, num_hidden_layers=2, intermediate_size=88, state_size=8, conv_kernel=3,
          time_step_rank=5, vocab_size=77, tie_word_embeddings=True, use_bias=True,
          use_conv_bias=False, layer_norm_epsilon=1e-4, mixer_rms_eps=1e-5),
     torch.float32, None),
    ("falcon_bf16_expand", "falcon_mamba",
     dict(hidden_size=48, num_hidden_layers=2, expand=2, state_size=16, conv_kernel=4,
          vocab_size=100, tie_word_embeddings=False, use_bias=False, use_conv_bias=True),
     torch.bfloat16, None),
    ("falcon_f16_tied", "falcon_mamba",
     dict(hidden_size=32, num_hidden_layers=2, intermediate_size=64, state_size=4, conv_kernel=4,
          vocab_size=64, tie_word_embeddings=True, use_bias=True, use_conv_bias=True),
     torch.float16, None),
    ("falcon_f32_sharded", "falcon_mamba",
     dict(hidden_size=64, num_hidden_layers=4, intermediate_size=128, state_size=16, conv_kernel=4,
          vocab_size=96, tie_word_embeddings=False, use_bias=False, use_conv_bias=True),
     torch.float32, "200KB"),
    ("mamba_f32_tied", "mamba",
     dict(hidden_size=48, num_hidden_layers=2, intermediate_size=96, state_size=16, conv_kernel=4,
          vocab_size=80, tie_word_embeddings=True, use_bias=False, use_conv_bias=True),
     torch.float32, None),
]


def perturb(model, gen):
    """Move every parameter away from its init so that each one matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("A_log"):
                p.add_(0.5 * noise)
            elif name.endswith(".D"):
                p.copy_(1.0 + 0.5 * noise)
            elif "norm" in name:
                p.copy_(1.0 + 0.3 * noise)
            elif name.endswith("dt_proj.bias"):
                p.add_(0.5 * noise)
            elif "embeddings" in name or "lm_head" in name:
                p.copy_(0.5 * noise)
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(noise * (1.5 / fan_in ** 0.5))
            else:
                p.copy_(0.2 * noise)


def logits_of(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0].float()


def greedy(model, prompt, steps):
    """Greedy continuation by full-sequence forwards; also returns the smallest top-2 margin."""
    ids = list(prompt)
    new, min_margin = [], float("inf")
    for _ in range(steps):
        last = logits_of(model, ids)[-1]
        top2 = torch.topk(last, 2)
        min_margin = min(min_margin, float(top2.values[0] - top2.values[1]))
        tok = int(top2.indices[0])
        ids.append(tok)
        new.append(tok)
    return new, min_margin


def build(name, kind, overrides, dtype, shard, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    common = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    common.update(overrides)
    if kind == "falcon_mamba":
        config = FalconMambaConfig(**common)
        model = FalconMambaForCausalLM(config)
    else:
        config = MambaConfig(**common)
        model = MambaForCausalLM(config)
    perturb(model, gen)
    model.eval()
    # Round to the stored dtype, then compute the reference in fp32 from the rounded weights.
    model = model.to(dtype).to(torch.float32)
    return config, model, gen


def main():
    os.makedirs(OUT, exist_ok=True)
    summary = []
    for idx, (name, kind, overrides, dtype, shard) in enumerate(CASES):
        seed = 1000 + idx
        for attempt in range(20):
            config, model, gen = build(name, kind, overrides, dtype, shard, seed + 100 * attempt)
            V = config.vocab_size
            lens = [1, 7, 19]
            prompts = [torch.randint(0, V, (n,), generator=gen).tolist() for n in lens]
            cont, margin = greedy(model, prompts[1], GREEDY_STEPS)
            if margin > 2e-3:
                break
        else:
            raise SystemExit(f"{name}: could not find a seed with a clear greedy margin")
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        stored = model.to(dtype)
        kwargs = dict(safe_serialization=True)
        if shard:
            kwargs["max_shard_size"] = shard
        stored.save_pretrained(d, **kwargs)
        model = stored.to(torch.float32)
        if "expand" in name:
            # Leave only `expand` in config.json so the loader's expand path is exercised.
            cpath = os.path.join(d, "config.json")
            with open(cpath) as f:
                cj = json.load(f)
            cj.pop("intermediate_size", None)
            with open(cpath, "w") as f:
                json.dump(cj, f, indent=2)
        for extra in ("generation_config.json",):
            p = os.path.join(d, extra)
            if os.path.exists(p):
                os.remove(p)
        expected = {
            "case": name,
            "model_type": kind,
            "dtype": str(dtype).replace("torch.", ""),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "prompts": [],
            "greedy": {"prompt": 1, "tokens": cont, "min_top2_margin": margin},
        }
        worst = 0.0
        for ids in prompts:
            lg = logits_of(model, ids)
            worst = max(worst, float(lg.abs().max()))
            expected["prompts"].append({"tokens": ids, "logits": [[float(v) for v in row] for row in lg]})
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(expected, f)
        files = sorted(os.listdir(d))
        summary.append(f"{name}: files={files} max|logit|={worst:.3f} greedy margin={margin:.4f}")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
