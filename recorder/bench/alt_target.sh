#!/bin/sh
# The traced program's own CPU time (perf task-clock, ms) and page faults,
# untraced (U) and inside two recorder builds (A, B), alternated round by
# round in rotating order; prints medians and the per-round ratios to U.
# Usage: recorder/bench/alt_target.sh ROUNDS RECORD_A RECORD_B PROGRAM [ARGS...]
#   e.g. recorder/bench/alt_target.sh 15 /tmp/record-before target/release/examples/record \
#            /usr/bin/sqlite3 :memory: -init recorder/bench/workload.sql .quit
# RECORD_ARGS adds options to every `record`.
set -eu
rounds=$1; a=$2; b=$3; shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq "$rounds"); do
    case $((i % 3)) in 0) order="U A B" ;; 1) order="A B U" ;; *) order="B U A" ;; esac
    for v in $order; do
        if [ "$v" = U ]; then
            perf stat -x, -e task-clock,page-faults -o "$work/s" "$@" >/dev/null 2>&1
        else
            if [ "$v" = A ]; then bin=$a; else bin=$b; fi
            "$bin" record --no-report ${RECORD_ARGS:-} -o "$work/t.atrace" -- \
                perf stat -x, -e task-clock,page-faults -o "$work/s" "$@" >/dev/null 2>&1
        fi
        echo "$i $v $(grep task-clock "$work/s" | cut -d, -f1) $(grep page-faults "$work/s" | cut -d, -f1)"
    done
done > "$work/all"
python3 - "$work/all" <<'PY'
import collections, statistics as st, sys
r = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    i, v, c, f = line.split()
    r[int(i)][v] = (float(c), int(f))
rs = [x for x in r.values() if len(x) == 3]
for v in "UAB":
    print(f"{v}: CPU median {st.median(x[v][0] for x in rs):.0f} ms, page faults median {st.median(x[v][1] for x in rs):.0f}")
for v in "AB":
    print(f"{v} / U: CPU median {st.median(x[v][0] / x['U'][0] for x in rs):.3f} (round by round)")
q = [x["B"][0] / x["A"][0] for x in rs]
print(f"B / A: CPU median {st.median(q):.3f}, B lower in {sum(v < 1 for v in q)} of {len(rs)} rounds")
PY
