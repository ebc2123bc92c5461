#!/bin/sh
# Overhead of `alloctrace record` against heaptrack on the same workloads in
# the same run, as wall-time ratios to the untraced program, plus trace sizes.
# Usage: recorder/bench/run.sh [path/to/alloctrace]   (default: release build)
# A recorder-only binary works too, without polars in the build:
#   cargo build --release -p recorder --example record
#   NO_REPORT=1 recorder/bench/run.sh target/release/examples/record
# (NO_REPORT=1 skips the "with report" column, which that binary cannot make.)
# RUNS sets hyperfine's runs per command (default 3); RECORD_ARGS adds options
# to every `record` (for example RECORD_ARGS="--time-resolution ns").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
at=${1:-$here/../../target/release/alloctrace}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 "$here/churn.c" -o "$work/churn"
cp "$here/workload.py" "$here/workload.sql" "$here/compile.cpp" "$work/"
cc1plus=$(g++ -print-prog-name=cc1plus)
cd "$work"
run() { # name, command...
    name=$1; shift
    if [ -n "${NO_REPORT:-}" ]; then
        hyperfine -N --warmup 1 --runs "${RUNS:-3}" --export-json "$name.json" \
            -n untraced "$*" \
            -n alloctrace "$at record --no-report ${RECORD_ARGS:-} -o $name.atrace -- $*" \
            -n heaptrack "heaptrack -o $work/$name.ht $*" >/dev/null 2>&1
    else
        hyperfine -N --warmup 1 --runs "${RUNS:-3}" --export-json "$name.json" \
            -n untraced "$*" \
            -n alloctrace "$at record --no-report ${RECORD_ARGS:-} -o $name.atrace -- $*" \
            -n "alloctrace+report" "$at record ${RECORD_ARGS:-} -o $name.atrace -- $*" \
            -n heaptrack "heaptrack -o $work/$name.ht $*" >/dev/null 2>&1
    fi
    python3 - "$name" <<'PY'
import json, sys, glob, os
name = sys.argv[1]
r = {x["command"]: x["mean"] for x in json.load(open(name + ".json"))["results"]}
base = r["untraced"]
ours = os.path.getsize(name + ".atrace")
ht = sum(os.path.getsize(f) for f in glob.glob(name + ".ht*"))
rep = f"{r['alloctrace+report']/base:.2f}x" if "alloctrace+report" in r else "n/a"
print(f"| {name} | {base:.3f} s | {r['alloctrace']/base:.2f}x | {rep} | {r['heaptrack']/base:.2f}x | {ours/1e6:.2f} MB | {ht/1e6:.2f} MB |")
PY
}
echo "| workload | untraced | alloctrace | alloctrace with report | heaptrack | alloctrace trace | heaptrack trace |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
[ -n "${ONLY:-}" ] && [ "$ONLY" != churn ] || run churn ./churn
[ -n "${ONLY:-}" ] && [ "$ONLY" != python3 ] || run python3 /usr/bin/python3 workload.py
[ -n "${ONLY:-}" ] && [ "$ONLY" != sqlite3 ] || run sqlite3 /usr/bin/sqlite3 :memory: -init workload.sql .quit
# gcc's compiler proper on a small C++ file: deep, varied stacks (no issue
# target; heaptrack, unlike `record`, does not follow the g++ driver's
# children, so both trace cc1plus itself).
[ -n "${ONLY:-}" ] && [ "$ONLY" != gcc ] || run gcc "$cc1plus" -quiet -imultiarch "$(gcc -print-multiarch)" -D_GNU_SOURCE -O2 compile.cpp -o compile.s
