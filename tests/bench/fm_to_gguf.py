#!/usr/bin/env python3
"""fm_to_gguf.py - a FalconMamba checkpoint in Hugging Face layout (config.json + safetensors, as
make_bench_model writes it) as a GGUF file for llama.cpp's mamba architecture, so llama-bench runs on
the very weights `falconmamba bench` does (tests/bench/compare_llama.sh). Plain Python (no numpy,
torch or gguf package: the development machine has none of them); a benchmarking aid, not part of
the library.

    fm_to_gguf.py MODEL_DIR VOCAB_GGUF OUT.gguf

VOCAB_GGUF: any GGUF file holding a tokenizer (llama.cpp ships models/ggml-vocab-gpt-neox.gguf);
its tokenizer.* entries are copied, the token list cut or padded with "[PAD<i>]" to the model's
vocab size. The random bench models have no tokenizer of their own, and llama-bench feeds random
token ids anyway.

What is written, as llama.cpp's convert_hf_to_gguf.py does for MambaModel / FalconMamba:
general.architecture "mamba" and its mamba.* sizes (ssm.dt_b_c_rms true for falcon_mamba); the
matrices and the embedding in their stored type (bf16 stays bf16, 16-bit pass through unchanged);
1-D tensors, the conv taps (squeezed to [d_inner][d_conv]) and A = -exp(A_log) in f32. GGUF lists
dimensions innermost first, so a [rows][cols] tensor is written as (cols, rows) with the same bytes.
"""
import json
import math
import os
import struct
import sys

ALIGN = 32
# GGUF value types
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i", T_F32: "<f",
          T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}
# GGML tensor types
G_F32, G_F16, G_BF16 = 0, 1, 30
ST_TYPES = {"F32": (G_F32, 4), "F16": (G_F16, 2), "BF16": (G_BF16, 2)}


# ---- reading a GGUF file's key/value section (for the vocabulary) ----------------------------------
def read_gguf_kv(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"GGUF":
        sys.exit(f"{path}: not a GGUF file")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    if version < 2:
        sys.exit(f"{path}: GGUF version {version} is too old")
    pos = 24

    def string():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        s = data[pos + 8:pos + 8 + n]
        pos += 8 + n
        return s

    def value(t):
        nonlocal pos
        if t == T_STR:
            return string()
        if t == T_ARR:
            (et, n) = struct.unpack_from("<IQ", data, pos)
            pos += 12
            return (et, [value(et) for _ in range(n)])
        fmt = SCALAR[t]
        (v,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v

    kv = {}
    for _ in range(n_kv):
        key = string().decode()
        (t,) = struct.unpack_from("<I", data, pos)
        pos += 4
        kv[key] = (t, value(t))
    return kv


# ---- writing -------------------------------------------------------------------------------------------
def enc_str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<Q", len(b)) + b


def enc_value(t, v):
    if t == T_STR:
        return enc_str(v)
    if t == T_ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(enc_value(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def enc_kv(key, t, v):
    return enc_str(key) + struct.pack("<I", t) + enc_value(t, v)


# ---- the checkpoint --------------------------------------------------------------------------------------
def open_safetensors(model_dir):
    """name -> (dtype, shape, file path, absolute byte offset, byte length)"""
    files = []
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for fn in files:
        path = os.path.join(model_dir, fn)
        with open(path, "rb") as f:
            (hlen,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(hlen))
        for name, t in header.items():
            if name == "__metadata__":
                continue
            b, e = t["data_offsets"]
            tensors[name] = (t["dtype"], t["shape"], path, 8 + hlen + b, e - b)
    return tensors


def read_bytes(entry):
    _, _, path, off, n = entry
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def as_floats(entry):
    dtype, shape, *_ = entry
    raw = read_bytes(entry)
    n = len(raw) // ST_TYPES[dtype][1]
    if dtype == "F32":
        return list(struct.unpack(f"<{n}f", raw))
    if dtype == "BF16":
        return [struct.unpack("<f", b"\0\0" + raw[2 * i:2 * i + 2])[0] for i in range(n)]
    return list(struct.unpack(f"<{n}e", raw))


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    model_dir, vocab_path, out_path = sys.argv[1:]
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    d_model = cfg["hidden_size"]
    n_layer = cfg["num_hidden_layers"]
    d_inner = cfg.get("intermediate_size", 2 * d_model)
    d_state = cfg.get("state_size", 16)
    d_conv = cfg.get("conv_kernel", 4)
    dt_rank = cfg.get("time_step_rank", -(d_model // -16))
    if dt_rank == "auto":
        dt_rank = -(d_model // -16)
    vocab = cfg["vocab_size"]
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    falcon = cfg.get("model_type") == "falcon_mamba"
    st = open_safetensors(model_dir)
    if "backbone.layers.0.mixer.in_proj.weight" not in st:
        sys.exit(f"{model_dir}: no backbone.layers.0.mixer.in_proj.weight: not a FalconMamba checkpoint")

    kv = [("general.architecture", T_STR, "mamba"), ("general.name", T_STR, os.path.basename(model_dir.rstrip("/"))),
          ("general.alignment", T_U32, ALIGN),
          ("mamba.context_length", T_U32, 1 << 20), ("mamba.embedding_length", T_U32, d_model),
          ("mamba.feed_forward_length", T_U32, 0), ("mamba.attention.head_count", T_U32, 0),
          ("mamba.block_count", T_U32, n_layer), ("mamba.ssm.conv_kernel", T_U32, d_conv),
          ("mamba.ssm.inner_size", T_U32, d_inner), ("mamba.ssm.state_size", T_U32, d_state),
          ("mamba.ssm.time_step_rank", T_U32, dt_rank),
          ("mamba.attention.layer_norm_rms_epsilon", T_F32, eps), ("mamba.ssm.dt_b_c_rms", T_BOOL, falcon)]
    # llama.cpp's file type (LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 / MOSTLY_BF16) from the projections' storage
    kv.append(("general.file_type", T_U32,
               {"F32": 0, "F16": 1, "BF16": 32}[st["backbone.layers.0.mixer.in_proj.weight"][0]]))
    # the vocabulary's tokenizer entries, its per-token arrays fitted to the model's vocab size
    for key, (t, v) in sorted(read_gguf_kv(vocab_path).items()):
        if not key.startswith("tokenizer."):
            continue
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores") and t == T_ARR:
            et, items = v
            items = items[:vocab]
            for i in range(len(items), vocab):
                items.append(f"[PAD{i}]".encode() if et == T_STR else 5 if key.endswith("token_type") else 0.0)
            v = (et, items)
        elif key.endswith("_token_id") and t in (T_U32, T_I32) and v >= vocab:
            continue
        kv.append((key, t, v))

    # (gguf name, source name, transform): None = the stored bytes; "f32" = widened; "a" = -exp(A_log);
    # "conv" = widened, [d_inner][1][d_conv] -> [d_inner][d_conv]
    plan = [("token_embd.weight", "backbone.embeddings.weight", None),
            ("output_norm.weight", "backbone.norm_f.weight", "f32")]
    if "lm_head.weight" in st and not cfg.get("tie_word_embeddings", False):
        plan.append(("output.weight", "lm_head.weight", None))
    for i in range(n_layer):
        p, q = f"backbone.layers.{i}.", f"blk.{i}."
        plan += [(q + "attn_norm.weight", p + "norm.weight", "f32"),
                 (q + "ssm_in.weight", p + "mixer.in_proj.weight", None),
                 (q + "ssm_conv1d.weight", p + "mixer.conv1d.weight", "conv"),
                 (q + "ssm_x.weight", p + "mixer.x_proj.weight", None),
                 (q + "ssm_dt.weight", p + "mixer.dt_proj.weight", None),
                 (q + "ssm_dt.bias", p + "mixer.dt_proj.bias", "f32"),
                 (q + "ssm_a", p + "mixer.A_log", "a"),
                 (q + "ssm_d", p + "mixer.D", "f32"),
                 (q + "ssm_out.weight", p + "mixer.out_proj.weight", None)]
        for opt in ("in_proj", "out_proj"):
            if p + f"mixer.{opt}.bias" in st:
                sys.exit(f"{p}mixer.{opt}.bias: llama.cpp's mamba has no projection biases")
        if p + "mixer.conv1d.bias" in st:
            plan.append((q + "ssm_conv1d.bias", p + "mixer.conv1d.bias", "f32"))
    for _, src, _ in plan:
        if src not in st:
            sys.exit(f"{model_dir}: no tensor {src}")

    infos, offset = [], 0
    for name, src, how in plan:
        dtype, shape, *_ = st[src]
        if how == "conv":
            shape = [shape[0], shape[-1]]
        gtype, esize = (ST_TYPES[dtype] if how is None else (G_F32, 4))
        n = 1
        for d in shape:
            n *= d
        infos.append((name, src, how, list(reversed(shape)), gtype, offset, n * esize))
        offset += -(-n * esize // ALIGN) * ALIGN

    with open(out_path, "wb") as out:
        out.write(b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kv)))
        for key, t, v in kv:
            out.write(enc_kv(key, t, v))
        for name, _, _, dims, gtype, off, _ in infos:
            out.write(enc_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) +
                      struct.pack("<IQ", gtype, off))
        out.write(b"\0" * (-out.tell() % ALIGN))
        base = out.tell()
        for name, src, how, _, _, off, nbytes in infos:
            out.write(b"\0" * (base + off - out.tell()))
            if how is None:
                entry = st[src]
                with open(entry[2], "rb") as f:  # copied in pieces: the 7b matrices are hundreds of MB
                    f.seek(entry[3])
                    left = entry[4]
                    while left:
                        chunk = f.read(min(left, 64 << 20))
                        out.write(chunk)
                        left -= len(chunk)
            else:
                vals = as_floats(st[src])
                if how == "a":
                    vals = [-math.exp(v) for v in vals]
                out.write(struct.pack(f"<{len(vals)}f", *vals))
            assert out.tell() - base - off == nbytes, name
        out.write(b"\0" * (-out.tell() % ALIGN))
    print(f"{out_path}: mamba, {len(infos)} tensors, {len(kv)} keys, d_model {d_model}, {n_layer} layers, "
          f"vocab {vocab}, {os.path.getsize(out_path) / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
