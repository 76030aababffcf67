#!/bin/sh
# compare_llama.sh - falconmamba bench side by side with llama.cpp's llama-bench on the same
# random-weight models, same machine, same thread counts. A benchmark, not a test: run it by hand on
# an otherwise idle machine (it prints the load average before each run; timings taken while other
# jobs run are not worth recording).
#
#   tests/bench/compare_llama.sh LLAMA_BUILD_DIR MODELS_DIR [options]
#
# MODELS_DIR holds, per shape S (130m, 1.4b, 7b):
#   fm-S-bf16/            our checkpoint: build/tests/make_bench_model --shape S --dtype bf16 MODELS_DIR/fm-S-bf16
#   ggml-S-W.gguf         the same weights converted to GGUF (W = bf16: tests/bench/fm_to_gguf.py
#                         fm-S-bf16 LLAMA/models/ggml-vocab-gpt-neox.gguf ggml-S-bf16.gguf), and
#                         llama-quantize'd (W = q8_0, q4_0; it refuses the 130m shape's 48-column dt_proj)
# Missing files are skipped with a note. Our q8_0 / q4_0 runs quantize the bf16 checkpoint at load
# (--weights), as the library does.
#
# Options:
#   --fm PATH          the falconmamba CLI (default: build/examples/falconmamba under the repo root)
#   --shapes LIST      default "130m 1.4b 7b"
#   --weights LIST     default "bf16 q8_0 q4_0"
#   --threads LIST     default "1 2"
#   --reps N           repetitions, median reported (default 3)
#   -p N / -n N        prompt tokens / generated tokens (default 512 / 128)
#   --batches LIST     our batched decode sizes, comma-separated (default "1,8"); llama-bench runs batch 1
#   --out DIR          keep the raw JSON of every run there (default: a new temp dir, printed)
#   --no-llama | --no-fm   run only one side (the table then shows "-" for the other)
#   --table-only       no runs: print the table from the JSON already in --out
#
# Commands run (per shape S, weights W, threads T):
#   LLAMA_BUILD_DIR/bin/llama-bench -m MODELS_DIR/ggml-S-W.gguf -p 512 -n 128 -t T -r 3 -o json
#   falconmamba bench -m MODELS_DIR/fm-S-bf16 --backend cpu --threads T --weights W -p 512 -n 128 -b 1,8 -r 3 --json
# llama-bench reports the mean of its repetitions; the table uses the median of its samples_ts, as
# for ours. Rough duration on a 2-core machine: 130m and 1.4b a few minutes each; 7b about an hour
# per side for all weights and both thread counts (decode at ~1 tok/s, 3 reps + warm-up).
set -eu

usage() { sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'; exit 2; }

[ $# -ge 2 ] || usage
LLAMA_BUILD=$1
MODELS=$2
shift 2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FM=$ROOT/build/examples/falconmamba
SHAPES="130m 1.4b 7b"
WEIGHTS="bf16 q8_0 q4_0"
THREADS="1 2"
REPS=3
NP=512
NG=128
BATCHES=1,8
OUT=
RUN_LLAMA=1
RUN_FM=1
TABLE_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
        --fm) FM=$2; shift ;;
        --shapes) SHAPES=$2; shift ;;
        --weights) WEIGHTS=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --reps) REPS=$2; shift ;;
        -p) NP=$2; shift ;;
        -n) NG=$2; shift ;;
        --batches) BATCHES=$2; shift ;;
        --out) OUT=$2; shift ;;
        --no-llama) RUN_LLAMA=0 ;;
        --no-fm) RUN_FM=0 ;;
        --table-only) TABLE_ONLY=1 ;;
        -h|--help) usage ;;
        *) echo "compare_llama.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
LLAMA_BENCH=$LLAMA_BUILD/bin/llama-bench
if [ -z "$OUT" ]; then OUT=$(mktemp -d "${TMPDIR:-/tmp}/compare_llama.XXXXXX"); fi
mkdir -p "$OUT"

if [ "$TABLE_ONLY" = 0 ]; then
    if [ "$RUN_LLAMA" = 1 ] && [ ! -x "$LLAMA_BENCH" ]; then echo "compare_llama.sh: no $LLAMA_BENCH" >&2; exit 1; fi
    if [ "$RUN_FM" = 1 ] && [ ! -x "$FM" ]; then echo "compare_llama.sh: no $FM (build it, or --fm PATH)" >&2; exit 1; fi
    {
        echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') ($(nproc) cores)"
        echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
        [ "$RUN_FM" = 1 ] && echo "falconmamba: $FM ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
        [ "$RUN_LLAMA" = 1 ] && echo "llama.cpp: $LLAMA_BENCH"
        echo "args: -p $NP -n $NG -r $REPS, threads $THREADS, our batches $BATCHES"
    } > "$OUT/env.txt"
    cat "$OUT/env.txt"
    TLIST=$(echo "$THREADS" | tr ' ' ',')
    for s in $SHAPES; do
        for w in $WEIGHTS; do
            gguf=$MODELS/ggml-$s-$w.gguf
            if [ "$RUN_LLAMA" = 1 ]; then
                if [ -f "$gguf" ]; then
                    echo "== llama-bench $s $w (threads $TLIST)   load: $(cut -d' ' -f1-3 /proc/loadavg)"
                    "$LLAMA_BENCH" -m "$gguf" -p "$NP" -n "$NG" -t "$TLIST" -r "$REPS" -o json \
                        > "$OUT/llama-$s-$w.json" 2> "$OUT/llama-$s-$w.log" ||
                        echo "   llama-bench failed (see $OUT/llama-$s-$w.log)"
                else
                    echo "== skip llama-bench $s $w: no $gguf"
                fi
            fi
            dir=$MODELS/fm-$s-bf16
            if [ "$RUN_FM" = 1 ]; then
                if [ -f "$dir/config.json" ]; then
                    for t in $THREADS; do
                        echo "== falconmamba bench $s $w (threads $t)   load: $(cut -d' ' -f1-3 /proc/loadavg)"
                        "$FM" bench -m "$dir" --backend cpu --threads "$t" --weights "$w" -p "$NP" -n "$NG" -b "$BATCHES" \
                            -r "$REPS" --json > "$OUT/fm-$s-$w-t$t.json" 2> "$OUT/fm-$s-$w-t$t.log" ||
                            echo "   falconmamba bench failed (see $OUT/fm-$s-$w-t$t.log)"
                    done
                else
                    echo "== skip falconmamba bench $s: no $dir/config.json"
                fi
            fi
        done
    done
fi

# The table. Our JSON is what `falconmamba bench --json` prints as its last line (examples/cli/bench.c:
# bandwidth_gbs, pp_tps, tg: [{batch, tps, fraction_of_limit}]). Failing that it is read tolerantly: any object (at any depth) that names a test "ppN"/"tgN"
# (keys test / name / kind / mode) with a tok/s figure (median_tok_s, tok_s_median, median, tok_s,
# avg_ts, ts), or that has flat keys pp_tok_s / tg_tok_s; "batch" / "n_batch" / "batch_size" give
# the batch (default 1); a key containing "bandwidth" (GB/s) and one containing "fraction" / "pct"
# (tg against the read-bandwidth limit) are shown when present. The shape it reads most plainly:
#   {"threads": 2, "weights": "q8_0", "read_bandwidth_gbs": 21.3,
#    "results": [{"test": "pp512", "batch": 1, "median_tok_s": 410.2, "samples_ts": [...]},
#                {"test": "tg128", "batch": 1, "median_tok_s": 2.9, "fraction_of_limit": 0.94},
#                {"test": "tg128", "batch": 8, "median_tok_s": 19.5}]}      (batch 8: all sessions' tokens/s)
python3 - "$OUT" "$SHAPES" "$WEIGHTS" "$THREADS" "$NP" "$NG" <<'EOF'
import json, os, re, statistics, sys

out, shapes, weights, threads, npr, ngen = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), \
    [int(t) for t in sys.argv[4].split()], int(sys.argv[5]), int(sys.argv[6])

def load(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # JSON lines, or JSON after other output: take every parseable line / the last {...} block
        items = []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith(("{", "[")):
                try:
                    items.append(json.loads(line))
                except ValueError:
                    pass
        if items:
            return items
        i = text.find("{")
        if i >= 0:
            try:
                return json.loads(text[i:])
            except ValueError:
                pass
        return None

def llama_results(shape, w):
    """{(test, threads): median tok/s} from llama-bench -o json."""
    data = load(os.path.join(out, "llama-%s-%s.json" % (shape, w)))
    res, commit = {}, None
    for r in data or []:
        commit = r.get("build_commit", commit)
        test = "pp" if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0 else \
               "tg" if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0 else None
        if test:
            ts = r.get("samples_ts") or [r.get("avg_ts")]
            res[(test, r.get("n_threads"))] = statistics.median(ts)
    return res, commit

TS_KEYS = ("median_tok_s", "tok_s_median", "median_ts", "median", "tok_per_s", "tokens_per_s", "tok_s",
           "avg_ts", "ts")

def walk(x):
    if isinstance(x, dict):
        yield x
        for v in x.values():
            yield from walk(v)
    elif isinstance(x, list):
        for v in x:
            yield from walk(v)

def num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

def fm_results(shape, w, t):
    """{(test, batch): tok/s}, bandwidth GB/s, fraction of limit (tg, batch 1)."""
    data = load(os.path.join(out, "fm-%s-%s-t%d.json" % (shape, w, t)))
    res, bw, frac = {}, None, None
    # falconmamba bench --json: {"bandwidth_gbs": .., "pp_tps": .., "tg": [{"batch": 1, "tps": .., "fraction_of_limit": ..}]}
    for d in (data if isinstance(data, list) else [data]):
        if isinstance(d, dict) and ("pp_tps" in d or isinstance(d.get("tg"), list)):
            if num(d.get("pp_tps")) is not None:
                res[("pp", 1)] = num(d["pp_tps"])
            bw = num(d.get("bandwidth_gbs"))
            for e in d.get("tg") or []:
                if isinstance(e, dict) and num(e.get("tps")) is not None:
                    b = int(num(e.get("batch")) or 1)
                    res[("tg", b)] = num(e["tps"])
                    if b == 1:
                        frac = num(e.get("fraction_of_limit"))
    if res:
        return res, bw, frac
    for d in walk(data):
        batch = int(num(d.get("batch", d.get("n_batch", d.get("batch_size", 1)))) or 1)
        for k, v in d.items():
            lk = k.lower()
            if "bandwidth" in lk and num(v) is not None and bw is None:
                bw = num(v)
            if ("fraction" in lk or "pct" in lk or "percent" in lk) and num(v) is not None and frac is None:
                frac = num(v) / (100.0 if "pct" in lk or "percent" in lk else 1.0)
            m = re.match(r"^(pp|tg)_?(\w*?tok\w*s|tps)$", lk)
            if m and num(v) is not None:
                res[(m.group(1), batch)] = num(v)
        label = next((d[k] for k in ("test", "name", "kind", "mode") if isinstance(d.get(k), str)), None)
        if label and label.lower()[:2] in ("pp", "tg"):
            ts = next((num(d[k]) for k in TS_KEYS if num(d.get(k)) is not None), None)
            if ts is None and isinstance(d.get("samples_ts"), list) and d["samples_ts"]:
                ts = statistics.median(d["samples_ts"])
            if ts is not None:
                res[(label.lower()[:2], batch)] = ts
    return res, bw, frac

def f(v, nd=1):
    if v is None:
        return "-"
    return ("%%.%df" % (2 if v < 10 else nd)) % v

def ratio(a, b):
    return "%.2fx" % (a / b) if a and b else "-"

rows, commit = [], None
for s in shapes:
    for w in weights:
        lr, c = llama_results(s, w)
        commit = commit or c
        for t in threads:
            fr, bw, frac = fm_results(s, w, t)
            if not lr and not fr:
                continue
            rows.append([s, w, str(t),
                         f(lr.get(("pp", t))), f(fr.get(("pp", 1))), ratio(fr.get(("pp", 1)), lr.get(("pp", t))),
                         f(lr.get(("tg", t))), f(fr.get(("tg", 1))), ratio(fr.get(("tg", 1)), lr.get(("tg", t))),
                         f(fr.get(("tg", 8))), f(bw), "%.0f%%" % (100 * frac) if frac is not None else "-"])

hdr = ["shape", "weights", "thr", "llama pp%d" % npr, "fm pp%d" % npr, "fm/llama",
       "llama tg%d" % ngen, "fm tg%d" % ngen, "fm/llama", "fm tg b8 (total)", "fm GB/s", "fm tg % of bw"]
print()
print("tokens/s, median of the repetitions (llama.cpp %s; raw JSON in %s)" % (commit or "?", out))
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join("---" for _ in hdr) + "|")
for r in rows:
    print("| " + " | ".join(r) + " |")
if not rows:
    print("(no results found in %s)" % out)
EOF
