#!/usr/bin/env python3
"""Writes tokenizer.json and tokenizer_config.json of a tiny HuggingFace byte-level BPE tokenizer.

The vocabulary is the 256 GPT-2 byte-level symbols (ids 0..255, in bytes_to_unicode order), the
results of a few merges of common English pairs, then three special added tokens. Every byte string
is encodable (each byte has a symbol), so any UTF-8 text round-trips. Standard library only; the
output is deterministic. Run from anywhere:  python3 tests/data/tiny_tokenizer/make.py [OUTDIR]
"""
import json
import os
import sys


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character table (the order defines ids 0..255)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


# Merges in rank order; each pair's parts must already be in the vocabulary when it is applied.
# "Ġ" is the byte-level symbol of a space.
MERGES = [
    ("Ġ", "t"), ("h", "e"), ("Ġ", "a"), ("i", "n"), ("Ġt", "he"), ("e", "r"), ("o", "n"), ("Ġ", "s"),
    ("r", "e"), ("e", "n"), ("Ġ", "w"), ("a", "t"), ("o", "r"), ("i", "s"), ("Ġ", "o"), ("Ġ", "i"),
    ("n", "d"), ("Ġa", "nd"), ("l", "l"), ("Ġ", "h"), ("o", "u"), ("Ġo", "f"), ("Ġt", "o"), ("in", "g"),
]

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build():
    vocab = {}
    for _, ch in bytes_to_unicode():
        vocab[ch] = len(vocab)
    merges = []
    for a, b in MERGES:
        assert a in vocab and b in vocab, (a, b)
        merges.append(a + " " + b)
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    added = []
    for s in SPECIALS:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
        vocab[s] = len(vocab)
    assert len(vocab) <= 300, len(vocab)
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": vocab, "merges": merges,
        },
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1000000000000000019884624838656,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_prefix_space": False,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in added},
    }
    return tokenizer, config


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    tokenizer, config = build()
    for name, obj in (("tokenizer.json", tokenizer), ("tokenizer_config.json", config)):
        with open(os.path.join(out, name), "w", encoding="utf-8", newline="\n") as f:
            json.dump(obj, f, ensure_ascii=False, indent=2)
            f.write("\n")
    print("vocab size %d (%d merges, specials %s)" % (len(tokenizer["model"]["vocab"]), len(MERGES),
          ", ".join("%s=%d" % (s, tokenizer["model"]["vocab"][s]) for s in SPECIALS)))


if __name__ == "__main__":
    main()
