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
# and the pass; zstd is opt-level 3 already) and for the symbolizer's crates
# (blazesym, gimli, the zlib inflater of compressed debug sections, the
# demanglers) and serde_json (the analysis cache): a release build optimizes
# them all, and at opt-level 0 inflating libc's debug info alone costs
# `summary` 0.4 s. A release build means a ~30 min polars build on 2 cores,
# so polars stays at opt-level 0, which makes `export` (its Parquet encoder)
# much slower than a release build would.
set -euo pipefail
EVENTS=${1:-20000000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${BENCH_DIR:-/tmp/alloctrace-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$OUT"
cd "$ROOT"
OPT=()
for p in analyzer traces blazesym gimli zlib-rs flate2 miniz_oxide cpp_demangle \
         rustc-demangle serde_json simd-adler32 adler2 crc32fast; do
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
cp "$T.analysis" "$OUT/from-record.analysis"
echo "== time"
# Cold: no cache from record; summary runs the pass and writes TRACE.analysis,
# leaks and errors reuse it. After record: all three start from record's cache.
# (hyperfine pairs the --prepare options with the commands in order.)
hyperfine --warmup 1 --runs 5 --export-markdown "$OUT/time.md" \
  --prepare true --prepare "rm -f $T.analysis" \
  --prepare "cp $OUT/from-record.analysis $T.analysis" --prepare true --prepare true \
  -n heaptrack_print "heaptrack_print $OUT/ht.zst" \
  -n "summary+leaks+errors (cold: the first writes the cache)" "$(three '')" \
  -n "summary+leaks+errors (after record)" "$(three '')" \
  -n "one pass (errors --no-cache)" "$B errors --no-cache $T" \
  -n "summary+leaks+errors (--no-cache: 3 passes)" "$(three --no-cache)"
echo "== decoding alone, and the pass alone over decoded batches (CPU time)"
"$B" decode "$T"
"$B" pass "$T" "$EVENTS"

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
  for c in summary leaks errors; do
    /usr/bin/time -f "$f $c --no-cache %M KB %e s" "$B" $c --no-cache "$OUT/$f.atrace" >/dev/null
  done
  /usr/bin/time -f "$f export %M KB %e s" "$B" export "$OUT/$f.atrace" --parquet "$OUT/$f.parquet" >/dev/null
done
