#!/usr/bin/env python3
"""Train the bundled model: a byte-level BPE tokenizer (Falcon's pre-tokenizer/decoder pipeline) and a
small FalconMambaForCausalLM on the King James Bible (public domain; see prepare_corpus.sh).

Runs on one GPU with torch + transformers + tokenizers; stops training at --minutes of wall time.
Writes OUTDIR/{config.json, model.safetensors (bf16), tokenizer.json, tokenizer_config.json,
expected.json, train_log.json}. expected.json holds what the library is tested against: the greedy
continuation of a prompt and the held-out perplexity, both computed by transformers in fp32 from the
saved bf16 weights.
usage: python3 models/train/train_kjv.py CORPUS_DIR OUTDIR [--minutes 6]
"""
import argparse
import json
import math
import os
import time

import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import FalconMambaConfig, FalconMambaForCausalLM

CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                 "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
PROMPTS = ["In the beginning", "And the LORD said unto Moses,", "Blessed are the"]


def make_tokenizer(train_file, vocab):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split(Regex("[0-9][0-9][0-9]"), behavior="isolated"),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([train_file], trainer)
    return tok


def encode_lines(tok, path, eot):
    ids = []
    for enc in tok.encode_batch(open(path, encoding="utf-8").read().splitlines()):
        ids.extend(enc.ids + [tok.token_to_id("Ċ")])  # newline between verses
    return ids


def nll_of(model, ids):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids], device=model.device), use_cache=False).logits[0].float()
    lp = torch.log_softmax(logits[:-1], dim=-1)
    tgt = torch.tensor(ids[1:], device=model.device)
    return float(-lp.gather(1, tgt[:, None]).mean())


def greedy(model, ids, steps):
    ids = list(ids)
    out = []
    for _ in range(steps):
        with torch.no_grad():
            last = model(input_ids=torch.tensor([ids], device=model.device), use_cache=False).logits[0, -1].float()
        t = int(torch.argmax(last))
        ids.append(t)
        out.append(t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=320)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    a = ap.parse_args()
    t_start = time.time()
    torch.manual_seed(0)
    os.makedirs(a.out, exist_ok=True)
    tok = make_tokenizer(os.path.join(a.corpus, "train.txt"), a.vocab)
    eot = tok.token_to_id("<|endoftext|>")
    train = torch.tensor(encode_lines(tok, os.path.join(a.corpus, "train.txt"), eot))
    held = encode_lines(tok, os.path.join(a.corpus, "heldout.txt"), eot)
    print(f"vocab {tok.get_vocab_size()}  train tokens {len(train)}  held-out tokens {len(held)}", flush=True)

    cfg = FalconMambaConfig(vocab_size=tok.get_vocab_size(), hidden_size=a.d_model, num_hidden_layers=a.layers,
                            state_size=16, expand=2, conv_kernel=4, tie_word_embeddings=True, use_bias=False,
                            use_conv_bias=True, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot)
    model = FalconMambaForCausalLM(cfg).cuda()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    budget = a.minutes * 60 - (time.time() - t_start)
    t0, step, log = time.time(), 0, []
    train_gpu = train.cuda()
    while True:
        elapsed = time.time() - t0
        if elapsed > budget:
            break
        frac = elapsed / budget
        lr = a.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(train_gpu) - a.seq - 1, (a.batch,), device="cuda")
        x = torch.stack([train_gpu[s:s + a.seq + 1] for s in starts])
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x[:, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0:
            log.append({"step": step, "seconds": round(elapsed, 1), "loss": round(float(loss), 4)})
            print(log[-1], flush=True)
        step += 1
    final_loss = float(loss)

    # Save in bf16, then measure everything on the saved weights in fp32, as the library computes.
    model.eval()
    model.to(torch.bfloat16).save_pretrained(a.out, safe_serialization=True)
    for extra in ("generation_config.json",):
        p = os.path.join(a.out, extra)
        if os.path.exists(p):
            os.remove(p)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
                   "bos_token": None, "pad_token": "<|endoftext|>", "model_max_length": 1000000,
                   "chat_template": CHAT_TEMPLATE}, f, indent=2)
    model = model.float()
    eval_ids = held[:2048]
    ppl = math.exp(nll_of(model, eval_ids))
    greedy_cases = []
    for p in PROMPTS:
        ids = tok.encode(p).ids
        g = greedy(model, ids, 48)
        greedy_cases.append({"prompt": p, "prompt_ids": ids, "tokens": g, "text": tok.decode(g)})
        print(p, "->", tok.decode(g), flush=True)
    expected = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
                "heldout_tokens_scored": len(eval_ids) - 1, "heldout_ids": eval_ids, "heldout_perplexity": ppl,
                "greedy": greedy_cases}
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(expected, f)
    with open(os.path.join(a.out, "train_log.json"), "w") as f:
        json.dump({"steps": step, "train_seconds": round(time.time() - t0, 1), "final_train_loss": final_loss,
                   "params": n_params, "args": vars(a), "log": log,
                   "train_tokens": len(train), "heldout_perplexity": ppl}, f, indent=1)
    print(f"steps {step} final loss {final_loss:.4f} held-out ppl {ppl:.3f}", flush=True)


if __name__ == "__main__":
    main()
