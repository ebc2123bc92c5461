#!/bin/sh
# Instructions per call of the malloc and free hooks on churn (callgrind),
# with the preload library alone: no `record`, no collector. PAIRS pairs
# (default 1,000,000: 2 M records, ~56 MB, fit in the process file's chunks,
# so nothing waits for a collector). The hook's cost is its inclusive count
# minus the real malloc's (free's) inside it.
# LATE=0 times every record in the hook, as `record --time-resolution us|ns`
# does; by default (LATE=1, as `record` does) a single-threaded program's
# records are left for the collector to date.
# Usage: [LATE=0] recorder/bench/hook_cost.sh PRELOAD.so [PAIRS]
#   cargo build --release -p alloctrace-preload
#   recorder/bench/hook_cost.sh $CARGO_TARGET_DIR/release/liballoctrace_preload.so
set -eu
here=$(cd "$(dirname "$0")" && pwd)
so=$(realpath "$1")
pairs=${2:-1000000}
work=$(mktemp -d)
dir=$(mktemp -d /dev/shm/alloctrace-hookcost.XXXXXX)
trap 'rm -rf "$work" "$dir"' EXIT
cc -O2 "$here/churn.c" -o "$work/churn"
ALLOCTRACE_DIR=$dir ALLOCTRACE_CLOCK=tsc ALLOCTRACE_LATE_TIMES=${LATE:-1} LD_PRELOAD=$so \
    valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$work/churn" "$pairs" \
    >/dev/null 2>"$work/log"
grep -o 'refs: .*' "$work/log"
# From a directory without the sources: inside the repository the annotator
# splits a function's cost between absolute and relative file names.
(cd "$work" && callgrind_annotate --inclusive=yes cg 2>/dev/null) | python3 -c '
import re, sys
pairs = int(sys.argv[1])
d = {}
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) .*?(hooks\.rs:(?:malloc|free)|malloc\.c:(?:malloc|free)) ", line)
    if m and m.group(2) not in d:
        d[m.group(2)] = int(m.group(1).replace(",", ""))
# churn: one malloc per pair; one free per pair plus 10,000 at the end.
mallocs, frees = pairs, pairs + 10000
print("malloc hook: %.1f instructions per call" % ((d["hooks.rs:malloc"] - d["malloc.c:malloc"]) / mallocs))
print("free hook: %.1f instructions per call" % ((d["hooks.rs:free"] - d["malloc.c:free"]) / frees))
' "$pairs"
