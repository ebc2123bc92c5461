#!/usr/bin/env bash
# The expected exact peak resident set of a program under several allocators over
# randomised load addresses, without the noise of random runs.
#
# With randomisation on, a library's resident pages depend on where it lands
# relative to the kernel's 64 KiB fault-around windows (16 pages), so a program's
# peak moves by +-100 KiB from run to run and the library of an allocator changes
# the others' placement. Here each run has randomisation off (exactpeak -R) and
# preloads first a pad library whose zero-filled data spans k pages (k = 0..N-1):
# every later mapping moves down by k pages, so N >= 16 consecutive layouts put
# every library at every phase of the window. The mean over them is the expected
# peak, up to effects of a longer period (fault-around also stops at 2 MiB
# page-table boundaries: 16 layouts put sqlite3 10 KiB above glibc, 48 layouts
# 16 KiB); the pad's own resident pages are the same for every allocator.
# Allocators alternate within each layout: compare them within one run (absolute
# figures drift between runs by a dozen KiB as the page cache changes: fault-around
# maps only cached pages). Prints each allocator's mean and values.
#
# Usage: allocator/bench/phase_mean.sh N PROGRAM ALLOCATOR...
#   N: layouts (a multiple of 16; 32 or 48 for figures)
#   PROGRAM: churn, churn_mt, python3, sqlite3, git or gcc (as in run.sh)
#   ALLOCATOR: glibc, or the absolute path of a malloc library to preload
# Example (the fifth session's figures):
#   allocator/bench/phase_mean.sh 48 sqlite3 glibc $PWD/target/release/liballoctrace_malloc.so
set -euo pipefail
n=$1; prog=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/exactpeak" "$here/exactpeak.c"
for ((k = 0; k < n; k++)); do
  echo "char alloctrace_pad[$k * 4096 + 1];" >"$work/pad.c"
  cc -shared -fPIC -O2 -o "$work/pad$k.so" "$work/pad.c"
done
# shellcheck source=workloads.sh
source "$here/workloads.sh"
[ -n "${cmd[$prog]:-}" ] || { echo "unknown program: $prog" >&2; exit 2; }
declare -A res
for ((k = 0; k < n; k++)); do
  for lib in "$@"; do
    pre=$work/pad$k.so
    [ "$lib" != glibc ] && pre="$pre:$lib"
    v=$(env LD_PRELOAD="$pre" bash -c "exec $work/exactpeak -R -- ${cmd[$prog]} >/dev/null" 2>&1 \
      | sed -n 's/^exact peak \([0-9]*\) KiB.*/\1/p')
    res[$lib]+="$v "
  done
done
for lib in "$@"; do
  mean=$(echo ${res[$lib]} | tr ' ' '\n' | awk '{s += $1; c++} END {printf "%.1f", s / c}')
  echo "$prog $(basename "$lib") mean $mean over $n layouts: ${res[$lib]}"
done
