#!/bin/sh
# Records the sample traces of this folder (see README.md) and the peak RSS of
# each program run without the recorder (for the replayer's fidelity figures).
#
#   ALLOCTRACE=path/to/alloctrace traces/samples/make.sh
#
# Needs cc, python3, sqlite3 and GNU time (/usr/bin/time).
set -eu
cd "$(dirname "$0")"
ALLOCTRACE=${ALLOCTRACE:-alloctrace}
REC="$ALLOCTRACE record --max-depth 16"
# The interpreter itself, not a wrapper script such as a pyenv shim.
PYTHON=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cc -O2 -g -pthread -o "$tmp/mt" programs/mt.c

# name, then the command
run() {
    name=$1; shift
    $REC -o "$name.atrace" -- "$@" > /dev/null
    # Peak RSS of the program alone, in KiB (best of 3 runs).
    best=
    for _ in 1 2 3; do
        kib=$(/usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1)
        if [ -z "$best" ] || [ "$kib" -lt "$best" ]; then best=$kib; fi
    done
    echo "$name $best" >> "$tmp/rss"
}

run python3 "$PYTHON" programs/workload.py
run sqlite3 sqlite3 :memory: -init programs/workload.sql .quit
run mt "$tmp/mt" 20000

{
    echo "# Peak RSS (KiB) of each sample program run without the recorder,"
    echo "# best of 3, measured by make.sh with GNU time on $(date -u +%Y-%m-%d)."
    cat "$tmp/rss"
} > original-rss.txt
ls -l ./*.atrace
