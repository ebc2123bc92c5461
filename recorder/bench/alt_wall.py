#!/usr/bin/env python3
"""Wall time of a program untraced (U) and recorded by two recorder builds
(A, B), the three alternated round by round in rotating order, so this
machine's speed swings hit all alike. Prints medians, the per-round ratios
to U, and in how many rounds B beat A.

Usage: recorder/bench/alt_wall.py ROUNDS RECORD_A RECORD_B [--replace FILE] -- PROGRAM [ARGS...]
  e.g. recorder/bench/alt_wall.py 20 /tmp/record-before target/release/examples/record \\
           -- /usr/bin/sqlite3 :memory: -init recorder/bench/workload.sql .quit
--replace FILE copies FILE to the output path before each recorded run
(untimed), as when a recording overwrites the last one's trace (run.sh).
RECORD_ARGS adds options to every `record`.
"""
import os, shutil, statistics as st, subprocess, sys, tempfile, time

args = sys.argv[1:]
if "--" not in args or len(args) < 4:
    sys.exit(__doc__)
cut = args.index("--")
head, prog = args[:cut], args[cut + 1:]
rounds, a, b = int(head[0]), head[1], head[2]
replace = head[head.index("--replace") + 1] if "--replace" in head else None
work = tempfile.mkdtemp()
out = os.path.join(work, "t.atrace")
extra = os.environ.get("RECORD_ARGS", "").split()
cmds = {"U": prog,
        "A": [a, "record", "--no-report", *extra, "-o", out, "--", *prog],
        "B": [b, "record", "--no-report", *extra, "-o", out, "--", *prog]}
orders = ["UAB", "ABU", "BUA", "UBA", "BAU", "AUB"]
res = {k: [] for k in "UAB"}
with open(os.devnull, "w") as dn:
    for i in range(rounds):
        for k in orders[i % 6]:
            if replace and k != "U":
                shutil.copyfile(replace, out)
            t = time.perf_counter()
            subprocess.run(cmds[k], stdout=dn, stderr=dn)
            res[k].append(time.perf_counter() - t)
shutil.rmtree(work)
for k in "UAB":
    print(f"{k}: median {st.median(res[k]):.3f} s, min {min(res[k]):.3f} s")
for k in "AB":
    r = [x / u for x, u in zip(res[k], res["U"])]
    print(f"{k} / U: median {st.median(r):.3f} (round by round)")
r = [y / x for x, y in zip(res["A"], res["B"])]
print(f"B / A: median {st.median(r):.3f}, B faster in {sum(v < 1 for v in r)} of {rounds} rounds")
