#!/usr/bin/env bash
# Analyzer benchmark: alloctrace summary + leaks + errors against heaptrack_print
# on traces of the same churn program (bench/churn.c), recorded by each tool in
# the same run; and peak memory on a trace made 10x longer with the same live set.
#
# Usage: analyzer/bench/run.sh [EVENTS] [PAIRS]
#   EVENTS: events of the churn run (default 20000000);
#   PAIRS: alternated heaptrack_print / cold alloctrace pairs timed (default 10).
#   Results in $BENCH_DIR (default /tmp/alloctrace-bench).
# Needs: cc, heaptrack + heaptrack_print, hyperfine, /usr/bin/time.
#
# What is measured is what a user runs: the `alloctrace` binary of the
# release profile (what `cargo install --path .` builds), recording with
# `alloctrace record` and analysing with `alloctrace summary|leaks|errors`.
# The first release build compiles polars (about 30 min on 2 cores); later
# ones rebuild only our crates (about a minute). The analyzer's examples
# `bench_cli` (decoding alone, the pass alone) and `gen_churn` (synthetic
# traces) are built in the release profile too.
#
# The headline ratio comes from alternated pairs in the same run (this VM's
# speed swings ~2x over minutes): each pair times heaptrack_print, then the
# three commands cold (no analysis cache: `summary` runs the pass and writes
# TRACE.analysis, `leaks` and `errors` reuse it); the ratio of each pair and
# their median are printed. hyperfine then times the other variants.
set -euo pipefail
EVENTS=${1:-20000000}
PAIRS=${2:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${BENCH_DIR:-/tmp/alloctrace-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$OUT"
cd "$ROOT"
cargo build -q --release -p alloctrace --bin alloctrace
cargo build -q --release -p analyzer --example bench_cli --example gen_churn
A=$CARGO_TARGET_DIR/release/alloctrace
B=$CARGO_TARGET_DIR/release/examples/bench_cli
G=$CARGO_TARGET_DIR/release/examples/gen_churn
T=$OUT/churn.atrace

echo "== machine"; nproc; grep -m1 'model name' /proc/cpuinfo; uptime
git -C "$ROOT" log -1 --format='commit %h %s' || true
cc -O2 -g -o "$OUT/churn" analyzer/bench/churn.c

echo "== record with heaptrack and with alloctrace ($EVENTS events)"
rm -f "$OUT"/ht.* "$T" "$T.analysis"
heaptrack -o "$OUT/ht" "$OUT/churn" "$EVENTS" >/dev/null
# record analyses the run once and leaves $T.analysis for the commands below.
"$A" record -o "$T" -- "$OUT/churn" "$EVENTS"
ls -la "$OUT/ht.zst" "$T" "$T.analysis"
cp "$T.analysis" "$OUT/from-record.analysis"

three() { echo "$A summary $1 $T >/dev/null && $A leaks $1 $T >/dev/null && $A errors $1 $T >/dev/null"; }
cold() { rm -f "$T.analysis"; eval "$(three '')"; }

echo "== same-run ratio: heaptrack_print vs summary + leaks + errors cold, alternated ($PAIRS pairs)"
TIMEFORMAT='%3R %3U %3S'
heaptrack_print "$OUT/ht.zst" >/dev/null # warm-up (page cache)
cold
printf '%4s %22s %22s %7s\n' pair 'heaptrack_print s' 'cold three s' ratio
printf '%4s %22s %22s %7s\n' '' '(wall user sys)' '(wall user sys)' ''
: >"$OUT/pairs.txt"
for i in $(seq "$PAIRS"); do
  h=$( { time heaptrack_print "$OUT/ht.zst" >/dev/null 2>&1; } 2>&1 )
  o=$( { time cold >/dev/null 2>&1; } 2>&1 )
  echo "$i $h $o" >>"$OUT/pairs.txt"
done
awk '{ r = $2 / $5; printf "%4d %8.3f %6.3f %6.3f %8.3f %6.3f %6.3f %6.2fx\n", $1, $2, $3, $4, $5, $6, $7, r }' "$OUT/pairs.txt"
awk '{ print $2 / $5 }' "$OUT/pairs.txt" | sort -g |
  awk '{ r[NR] = $1 } END { m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2;
        printf "median ratio %.2fx (min %.2fx, max %.2fx) over %d pairs\n", m, r[1], r[NR], NR }'
awk '{ h += $2; o += $5 } END { printf "mean wall: heaptrack_print %.3f s, cold three %.3f s: %.2fx\n", h / NR, o / NR, h / o }' "$OUT/pairs.txt"

echo "== time of the other variants (hyperfine)"
# After record: all three start from record's cache. (hyperfine pairs the
# --prepare options with the commands in order.)
hyperfine --warmup 1 --runs 5 --export-markdown "$OUT/time.md" \
  --prepare "cp $OUT/from-record.analysis $T.analysis" --prepare true --prepare true \
  -n "summary+leaks+errors (after record)" "$(three '')" \
  -n "one pass (errors --no-cache)" "$A errors --no-cache $T" \
  -n "summary+leaks+errors (--no-cache: 3 passes)" "$(three --no-cache)"
echo "== decoding alone, and the pass alone over decoded batches (CPU time)"
"$B" decode "$T"
"$B" pass "$T" "$EVENTS"

echo "== peak RSS (KB)"
/usr/bin/time -f "heaptrack_print %M KB %e s" heaptrack_print "$OUT/ht.zst" >/dev/null
for c in summary leaks errors; do
  /usr/bin/time -f "$c --no-cache %M KB %e s" "$A" $c --no-cache "$T" >/dev/null
done

echo "== memory flat when the trace is 10x longer (same live set: 10000 slots)"
# Peak RSS moves by a few MB from run to run (how far the block thread has
# read ahead, and when the symbolizer inflates debug info, depend on
# timing), so each figure is the median of 5 runs, with their range.
rss() { # LABEL CMD...: prints the median peak RSS of 5 runs of CMD
  local label=$1 v=() i
  shift
  for i in 1 2 3 4 5; do
    /usr/bin/time -o "$OUT/rss.tmp" -f "%M" "$@" >/dev/null 2>&1
    v+=("$(tail -1 "$OUT/rss.tmp")")
  done
  printf '%s\n' "${v[@]}" | sort -n |
    awk -v l="$label" '{ r[NR] = $1 } END { printf "%s %d KB (min %d, max %d)\n", l, r[3], r[1], r[5] }'
}
N=$((EVENTS / 10))
"$G" "$OUT/short.atrace" "$N" 10000 500 4
"$G" "$OUT/long.atrace" "$EVENTS" 10000 500 4
: >"$OUT/rss.txt"
for f in short long; do
  for c in summary leaks errors; do
    rss "$f $c --no-cache" "$A" $c --no-cache "$OUT/$f.atrace" | tee -a "$OUT/rss.txt"
  done
  rss "$f export" "$A" export "$OUT/$f.atrace" --parquet "$OUT/$f.parquet" | tee -a "$OUT/rss.txt"
done
# Long over short, per command (medians).
awk '{ k = $2; m[$1, k] = $(NF - 5) } END {
  n = split("summary leaks errors export", c, " ")
  for (i = 1; i <= n; i++) printf "%s: long/short %+.1f %%\n", c[i], 100 * (m["long", c[i]] / m["short", c[i]] - 1)
}' "$OUT/rss.txt"
