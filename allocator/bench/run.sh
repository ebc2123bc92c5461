#!/usr/bin/env bash
# Benchmarks liballoctrace_malloc.so against glibc, jemalloc and mimalloc, each
# preloaded under the same programs in the same run: wall time (hyperfine, mean of
# RUNS runs) and peak RSS (/usr/bin/time -f %M, median of RSS_RUNS runs, default 5,
# with address-space randomisation off), as ratios to glibc. With EXACT=1, also the
# exact peak (bench/exactpeak.c: RssAnon + RssFile at the system calls that can
# lower it, randomisation off, median of RSS_RUNS): getrusage's figure moves in
# steps of up to 128 KiB (the kernel's per-CPU counters fold every 32 pages), so
# differences of a few dozen KiB show only in the exact one.
#
# Usage: allocator/bench/run.sh            (from anywhere; RUNS=10 by default)
# Needs: cargo, cc, hyperfine, python3, sqlite3, git, gcc, /usr/bin/time.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs="${RUNS:-10}"
rss_runs="${RSS_RUNS:-5}"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build -q --release -p alloctrace-malloc --manifest-path "$root/Cargo.toml"
ours="$target/release/liballoctrace_malloc.so"
exact="${EXACT:-0}"
[ "$exact" = 1 ] && cc -O2 -o "$work/exactpeak" "$here/exactpeak.c"

declare -A lib=(
  [glibc]=""
  [jemalloc]=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
  [mimalloc]=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
  [alloctrace]="$ours"
)
order=(glibc jemalloc mimalloc alloctrace)

# shellcheck source=workloads.sh
source "$here/workloads.sh"

echo "# $(date -u +%Y-%m-%dT%H:%MZ), nproc $(nproc), $(lscpu | grep 'Model name' | sed 's/  */ /g')"
if [ "$exact" = 1 ]; then
  printf '%-10s %-11s %10s %8s %10s %8s %10s %8s\n' workload allocator "time(ms)" ratio "rss(KB)" ratio "exact(KB)" ratio
else
  printf '%-10s %-11s %10s %8s %10s %8s\n' workload allocator "time(ms)" ratio "rss(KB)" ratio
fi
for w in "${workloads[@]}"; do
  hf=()
  for a in "${order[@]}"; do
    hf+=("env LD_PRELOAD=${lib[$a]} ${cmd[$w]}")
  done
  hyperfine -N -w 1 -r "$runs" --export-json "$work/$w.json" "${hf[@]}" >/dev/null 2>&1 \
    || hyperfine -w 1 -r "$runs" --export-json "$work/$w.json" "${hf[@]}" >/dev/null
  for a in "${order[@]}"; do
    # Address-space randomisation moves peak RSS by ±100–150 KiB from run to run
    # (libc's pages that fault-around brings in depend on the load address);
    # `setarch -R` turns it off for the measured program, so medians repeat
    # within about 50 KiB.
    for ((i = 0; i < rss_runs; i++)); do
      env LD_PRELOAD="${lib[$a]}" /usr/bin/time -f %M -o "$work/rss" \
        setarch "$(uname -m)" -R bash -c "${cmd[$w]} >/dev/null"
      cat "$work/rss"
    done | sort -n | sed -n "$((rss_runs / 2 + 1))p" >"$work/$w.$a.rss"
    if [ "$exact" = 1 ]; then
      for ((i = 0; i < rss_runs; i++)); do
        env LD_PRELOAD="${lib[$a]}" bash -c "exec $work/exactpeak -R -- ${cmd[$w]} >/dev/null" 2>&1 \
          | sed -n 's/^exact peak \([0-9]*\) KiB.*/\1/p'
      done | sort -n | sed -n "$((rss_runs / 2 + 1))p" >"$work/$w.$a.exact"
    fi
  done
  python3 - "$work" "$w" "${order[@]}" <<'PY'
import json, sys
work, w, order = sys.argv[1], sys.argv[2], sys.argv[3:]
res = json.load(open(f"{work}/{w}.json"))["results"]
t = {a: r["mean"] * 1000 for a, r in zip(order, res)}
rss = {a: int(open(f"{work}/{w}.{a}.rss").read()) for a in order}
try:
    ex = {a: int(open(f"{work}/{w}.{a}.exact").read()) for a in order}
except OSError:
    ex = None
for a in order:
    line = f"{w:<10} {a:<11} {t[a]:10.1f} {t[a]/t['glibc']:8.2f} {rss[a]:10d} {rss[a]/rss['glibc']:8.2f}"
    if ex:
        line += f" {ex[a]:10d} {ex[a]/ex['glibc']:8.3f}"
    print(line)
PY
done
