#!/usr/bin/env bash
# Alternated peak-RSS runs of one program under several allocators, with address
# randomisation on or off; prints each allocator's median and every value (KiB,
# getrusage's peak via /usr/bin/time -f %M, which moves in steps of up to 128 KiB:
# see exactpeak.c for the exact figure).
#
# Usage: allocator/bench/rss_alternated.sh on|off RUNS PROGRAM ALLOCATOR...
#   PROGRAM: churn, churn_mt, python3, sqlite3, git or gcc (as in run.sh)
#   ALLOCATOR: glibc, or the path of a malloc library to preload
# Example (the fourth session's ASLR-on figures):
#   allocator/bench/rss_alternated.sh on 101 sqlite3 glibc target/release/liballoctrace_malloc.so
set -euo pipefail
mode=$1; n=$2; prog=$3; shift 3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=workloads.sh
source "$here/workloads.sh"
[ -n "${cmd[$prog]:-}" ] || { echo "unknown program: $prog" >&2; exit 2; }
declare -A res
for ((i = 0; i < n; i++)); do
  for lib in "$@"; do
    l=$lib; [ "$lib" = glibc ] && l=""
    if [ "$mode" = off ]; then
      env LD_PRELOAD="$l" /usr/bin/time -f %M -o "$work/rss" setarch "$(uname -m)" -R bash -c "${cmd[$prog]} >/dev/null"
    else
      env LD_PRELOAD="$l" /usr/bin/time -f %M -o "$work/rss" bash -c "${cmd[$prog]} >/dev/null"
    fi
    res[$lib]+="$(cat "$work/rss") "
  done
done
for lib in "$@"; do
  sorted=$(echo ${res[$lib]} | tr ' ' '\n' | sort -n)
  median=$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$prog $mode $(basename "$lib") median $median all: $(echo $sorted)"
done
