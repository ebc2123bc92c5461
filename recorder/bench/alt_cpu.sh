#!/bin/sh
# CPU time of two recorder builds on the same workload, alternated round by
# round (A B, B A, ...) so that this machine's speed swings hit both alike:
# the traced program's task-clock (perf stat inside the recording) and the
# collector's (perf stat --no-inherit on `record`), in ms.
# Usage: recorder/bench/alt_cpu.sh ROUNDS RECORD_A RECORD_B PROGRAM [ARGS...]
#   e.g. recorder/bench/alt_cpu.sh 10 /tmp/record-before target/release/examples/record ./churn
# RECORD_ARGS adds options to every `record`. Prints one line per run, then
# per build the mean target and collector ms and in how many rounds B's
# target (collector) time was below A's.
set -eu
rounds=$1; a=$2; b=$3; shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq "$rounds"); do
    if [ $((i % 2)) = 1 ]; then order="A B"; else order="B A"; fi
    for v in $order; do
        if [ "$v" = A ]; then bin=$a; else bin=$b; fi
        perf stat --no-inherit -x, -e task-clock -o "$work/coll" \
            "$bin" record --no-report ${RECORD_ARGS:-} -o "$work/t.atrace" -- \
            perf stat -x, -e task-clock -o "$work/targ" "$@" >/dev/null 2>&1
        echo "$i $v $(grep task-clock "$work/targ" | cut -d, -f1) $(grep task-clock "$work/coll" | cut -d, -f1)"
    done
done | tee "$work/all" | awk '{print "round " $1 " " $2 ": target " $3 " ms, collector " $4 " ms"}'
python3 - "$work/all" <<'PY'
import sys, collections
runs = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    i, v, t, c = line.split()
    runs[int(i)][v] = (float(t), float(c))
both = [r for r in runs.values() if len(r) == 2]
for v in "AB":
    t = sum(r[v][0] for r in both) / len(both)
    c = sum(r[v][1] for r in both) / len(both)
    print(f"{v}: target {t:.0f} ms, collector {c:.0f} ms (mean of {len(both)})")
lt = sum(r["B"][0] < r["A"][0] for r in both)
lc = sum(r["B"][1] < r["A"][1] for r in both)
print(f"B below A: target in {lt} of {len(both)} rounds, collector in {lc} of {len(both)}")
PY
