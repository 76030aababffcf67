#!/bin/sh
# Build the training corpus from Debian's bible-kjv package: the King James Version (1611, public
# domain), one verse per line with the references stripped. Holds out the last 1000 verses
# (end of the book of Revelation and before) for evaluation.
# usage: models/train/prepare_corpus.sh OUTDIR   (needs: apt-get install bible-kjv bible-kjv-text)
set -eu
out=$1
mkdir -p "$out"
bible -f "Genesis1:1-Revelation22:21" | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$out/kjv.txt"
n=$(wc -l < "$out/kjv.txt")
head -n $((n - 1000)) "$out/kjv.txt" > "$out/train.txt"
tail -n 1000 "$out/kjv.txt" > "$out/heldout.txt"
wc -lc "$out/train.txt" "$out/heldout.txt"
