#!/usr/bin/env python3
"""Write a FalconMamba checkpoint of a real model's shape with random bf16 weights (benchmarks only).

usage: make_random_model.py OUT_DIR [--shape 7b|1.4b|130m]

The tensors are drawn on the GPU when torch sees one (fast), scaled so that activations stay in a
sane range: projections ~ N(0, 1/fan_in), A_log = log(1..d_state), D = 1, dt bias so that
softplus(dt) is ~0.01, conv ~ N(0, 1/d_conv). falcon-mamba-7b: d_model 4096, 64 layers, d_inner 8192,
d_state 16, dt_rank 256, vocab 65024, d_conv 4, untied head (14.5 GB).
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

SHAPES = {
    "7b": dict(d=4096, L=64, di=8192, N=16, R=256, V=65024, K=4),
    "1.4b": dict(d=2048, L=48, di=4096, N=16, R=128, V=65024, K=4),
    "130m": dict(d=768, L=24, di=1536, N=16, R=48, V=65024, K=4),
}


def main():
    out = sys.argv[1]
    shape = sys.argv[sys.argv.index("--shape") + 1] if "--shape" in sys.argv else "7b"
    s = SHAPES[shape]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(0)
    os.makedirs(out, exist_ok=True)
    bf = torch.bfloat16

    def rnd(*shape, std=1.0, mean=0.0):
        return (torch.randn(*shape, generator=g, device=dev, dtype=torch.float32) * std + mean).to(bf).cpu()

    d, di, N, R, V, K = s["d"], s["di"], s["N"], s["R"], s["V"], s["K"]
    t = {"backbone.embeddings.weight": rnd(V, d, std=1.0), "backbone.norm_f.weight": torch.ones(d, dtype=bf),
         "lm_head.weight": rnd(V, d, std=1 / math.sqrt(d))}
    a_log = torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(di, 1).to(bf)
    for i in range(s["L"]):
        p = f"backbone.layers.{i}."
        t[p + "norm.weight"] = torch.ones(d, dtype=bf)
        t[p + "mixer.in_proj.weight"] = rnd(2 * di, d, std=1 / math.sqrt(d))
        t[p + "mixer.conv1d.weight"] = rnd(di, 1, K, std=1 / math.sqrt(K))
        t[p + "mixer.conv1d.bias"] = rnd(di, std=0.1)
        t[p + "mixer.x_proj.weight"] = rnd(R + 2 * N, di, std=1 / math.sqrt(di))
        t[p + "mixer.dt_proj.weight"] = rnd(di, R, std=1 / math.sqrt(R))
        t[p + "mixer.dt_proj.bias"] = rnd(di, std=0.5, mean=-4.6)
        t[p + "mixer.A_log"] = a_log.clone()
        t[p + "mixer.D"] = torch.ones(di, dtype=bf)
        t[p + "mixer.out_proj.weight"] = rnd(d, di, std=1 / math.sqrt(di) / math.sqrt(2 * s["L"]))
    save_file(t, os.path.join(out, "model.safetensors"))
    cfg = {
        "architectures": ["FalconMambaForCausalLM"], "model_type": "falcon_mamba", "bos_token_id": 0,
        "eos_token_id": 11, "pad_token_id": 11, "conv_kernel": K, "expand": di // d, "hidden_act": "silu",
        "hidden_size": d, "intermediate_size": di, "layer_norm_epsilon": 1e-5, "mixer_rms_eps": 1e-6,
        "num_hidden_layers": s["L"], "state_size": N, "tie_word_embeddings": False, "time_step_rank": R,
        "use_bias": False, "use_conv_bias": True, "vocab_size": V, "dtype": "bfloat16",
        "residual_in_fp32": True,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    n = sum(v.numel() for v in t.values())
    print(f"{out}: {shape}, {n / 1e9:.2f} B parameters, {2 * n / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
