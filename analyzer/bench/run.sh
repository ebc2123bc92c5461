#!/usr/bin/env bash
# Analyzer benchmark: alloctrace summary + leaks + errors against heaptrack_print
# on traces of the same churn program (bench/churn.c), recorded by each tool in
# the same run; and peak memory on a trace made 10x longer with the same live set.
#
# Usage: analyzer/bench/run.sh [EVENTS]   (default 20000000; results in $BENCH_DIR)
# Needs: cc, heaptrack + heaptrack_print, hyperfine, /usr/bin/time.
#
# The analyzer is built in the dev profile with opt-level 3 and no debug
# assertions or overflow checks for our crates (the hot path: trace decoding
# and the pass; zstd is opt-level 3 already): a release build means a ~30 min
# polars build on 2 cores. Dependencies stay at opt-level 0, which makes
# `export` (polars' Parquet encoder) much slower than a release build would.
set -euo pipefail
EVENTS=${1:-20000000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${BENCH_DIR:-/tmp/alloctrace-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$OUT"
cd "$ROOT"
OPT=()
for p in analyzer traces; do
  OPT+=(--config "profile.dev.package.$p.opt-level=3"
        --config "profile.dev.package.$p.debug-assertions=false"
        --config "profile.dev.package.$p.overflow-checks=false")
done
cargo build -q -p analyzer --examples "${OPT[@]}"
B=$CARGO_TARGET_DIR/debug/examples/bench_cli
G=$CARGO_TARGET_DIR/debug/examples/gen_churn
T=$OUT/churn.atrace

echo "== machine"; nproc; grep -m1 'model name' /proc/cpuinfo; uptime
cc -O2 -g -o "$OUT/churn" analyzer/bench/churn.c

echo "== record with heaptrack and with alloctrace ($EVENTS events)"
rm -f "$OUT"/ht.* "$T" "$T.analysis"
heaptrack -o "$OUT/ht" "$OUT/churn" "$EVENTS" >/dev/null
# record analyses the run once and leaves $T.analysis for the commands below.
"$B" record "$T" -- "$OUT/churn" "$EVENTS"
ls -la "$OUT/ht.zst" "$T" "$T.analysis"

three() { echo "$B summary $1 $T >/dev/null && $B leaks $1 $T >/dev/null && $B errors $1 $T >/dev/null"; }
echo "== time"
hyperfine --warmup 1 --runs 5 --export-markdown "$OUT/time.md" \
  -n heaptrack_print "heaptrack_print $OUT/ht.zst" \
  -n "summary+leaks+errors (after record)" "$(three '')" \
  -n "summary+leaks+errors (--no-cache: 3 passes)" "$(three --no-cache)" \
  -n "one pass (errors --no-cache)" "$B errors --no-cache $T"

echo "== peak RSS (KB)"
/usr/bin/time -f "heaptrack_print %M KB %e s" heaptrack_print "$OUT/ht.zst" >/dev/null
for c in summary leaks errors; do
  /usr/bin/time -f "$c --no-cache %M KB %e s" "$B" $c --no-cache "$T" >/dev/null
done

echo "== memory flat when the trace is 10x longer (same live set: 10000 slots)"
N=$((EVENTS / 10))
"$G" "$OUT/short.atrace" "$N" 10000 500 4
"$G" "$OUT/long.atrace" "$EVENTS" 10000 500 4
for f in short long; do
  /usr/bin/time -f "$f summary --no-cache %M KB %e s" "$B" summary --no-cache "$OUT/$f.atrace" >/dev/null
  /usr/bin/time -f "$f export %M KB %e s" "$B" export "$OUT/$f.atrace" --parquet "$OUT/$f.parquet" >/dev/null
done
