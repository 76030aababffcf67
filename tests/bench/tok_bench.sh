#!/bin/sh
# Tokenizer speed, ours and the reference's, in one run, on the shared test corpus repeated to ~4 MB.
# usage: tests/bench/tok_bench.sh BUILD_DIR [TOKENIZER_NAME...]   (default: falcon)
# Installs the reference (npm @anush008/tokenizers 0.6.0) into a scratch dir on first use.
set -eu
build=$1; shift
names=${*:-falcon}
shared=$(cd "$(dirname "$0")/../../../shared/tokenizers" && pwd)
oracle=${FM_ORACLE_DIR:-${TMPDIR:-/tmp}/fm-tok-oracle}
if [ ! -d "$oracle/node_modules/@anush008/tokenizers" ]; then
  mkdir -p "$oracle" && (cd "$oracle" && npm install --silent @anush008/tokenizers@0.6.0 @anush008/tokenizers-linux-x64-gnu@0.6.0 >/dev/null)
fi
text=$(mktemp)
trap 'rm -f "$text"' EXIT
python3 - "$shared/texts.jsonl" "$text" <<'PY'
import json, sys
body = "\n".join(json.loads(l)["text"] for l in open(sys.argv[1], encoding="utf-8"))
out = body
while len(out.encode()) < 4_000_000:
    out += "\n" + body
open(sys.argv[2], "w", encoding="utf-8").write(out)
PY
for name in $names; do
  tj=$shared/$name/tokenizer.json
  [ -f "$tj" ] || tj=$build/tests/tokenizers/$name/tokenizer.json
  echo "== $name"
  "$build/tests/tok_bench" "$tj" "$text" 3
  FM_ORACLE_DIR=$oracle/node_modules node "$(dirname "$0")/tok_bench_ref.mjs" "$tj" "$text" 3
done
