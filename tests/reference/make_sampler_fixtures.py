#!/usr/bin/env python3
"""Regenerate tests/reference/sampler_expected.json: what transformers' logits processors make of
fixed logits, for each processor alone and for the composition generate() builds.

For each case: random logits (V=100) and a token history with repeats; the params in our naming;
transformers' processed scores turned into probabilities (removed tokens -> 0). Also records the
order in which GenerationMixin._get_logits_processor composes the processors, so the test checks
that our order is transformers' order.
Needs torch + transformers. Usage: python3 tests/reference/make_sampler_fixtures.py
"""
import inspect
import json
import os

import torch
import transformers
from transformers import LogitsProcessorList
from transformers.generation.logits_process import (MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                                                    SequenceBiasLogitsProcessor, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper)

HERE = os.path.dirname(os.path.abspath(__file__))
V = 100

PARAMS = [
    dict(name="greedy_repeat", temperature=0.0, repeat_penalty=1.3),
    dict(name="temperature", temperature=0.7),
    dict(name="top_k", temperature=1.0, top_k=5),
    dict(name="top_p", temperature=1.0, top_p=0.9),
    dict(name="min_p", temperature=1.0, min_p=0.1),
    dict(name="typical", temperature=1.0, typical_p=0.8),
    dict(name="repeat", temperature=1.0, repeat_penalty=1.2),
    dict(name="logit_bias", temperature=1.0, logit_bias=[[3, 2.5], [7, -100.0], [11, 0.75]]),
    dict(name="combined", temperature=0.8, top_k=20, top_p=0.9, min_p=0.05, repeat_penalty=1.1, typical_p=0.95),
]


def build_list(p):
    """Explicit list in transformers' order (checked against _get_logits_processor below)."""
    procs = []
    if p.get("logit_bias"):
        procs.append(SequenceBiasLogitsProcessor({(t,): b for t, b in p["logit_bias"]}))
    if p.get("repeat_penalty", 1.0) != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(p["repeat_penalty"]))
    if p.get("temperature", 1.0) > 0:
        if p.get("temperature", 1.0) != 1.0:
            procs.append(TemperatureLogitsWarper(p["temperature"]))
        if p.get("top_k", 0):
            procs.append(TopKLogitsWarper(p["top_k"]))
        if p.get("top_p", 1.0) < 1.0:
            procs.append(TopPLogitsWarper(p["top_p"]))
        if p.get("min_p"):
            procs.append(MinPLogitsWarper(p["min_p"]))
        if p.get("typical_p", 1.0) < 1.0:
            procs.append(TypicalLogitsWarper(p["typical_p"]))
    return LogitsProcessorList(procs)


def generate_order():
    """Class names, in order, of what generate() builds for the combined params (best effort)."""
    from transformers.generation.utils import GenerationMixin
    src = inspect.getsource(GenerationMixin._get_logits_processor)
    names = ["SequenceBiasLogitsProcessor", "RepetitionPenaltyLogitsProcessor", "TemperatureLogitsWarper",
             "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper", "TypicalLogitsWarper"]
    pos = {n: src.find(n + "(") for n in names}
    return sorted([n for n in names if pos[n] >= 0], key=lambda n: pos[n])


def main():
    gen = torch.Generator().manual_seed(7)
    cases = []
    for p in PARAMS:
        for k in range(3):
            logits = (torch.randn(V, generator=gen) * 3.0).float()
            history = torch.randint(0, V, (20,), generator=gen)
            history[5:10] = history[0:5]  # repeats
            procs = build_list(p)
            scores = procs(history[None, :], logits[None, :].clone())[0]
            probs = torch.softmax(scores.double(), dim=-1)
            cases.append({
                "name": f"{p['name']}_{k}",
                "params": {kk: vv for kk, vv in p.items() if kk != "name"},
                "logits": [float(x) for x in logits],
                "history": [int(x) for x in history],
                "probs": [float(x) for x in probs],
                "kept": [bool(x) for x in torch.isfinite(scores)],
                "greedy": int(torch.argmax(scores)),
            })
    out = {"transformers_version": transformers.__version__, "n_vocab": V,
           "generate_order": generate_order(), "cases": cases}
    with open(os.path.join(HERE, "sampler_expected.json"), "w") as f:
        json.dump(out, f)
    print("order:", out["generate_order"], "cases:", len(cases))


if __name__ == "__main__":
    main()
