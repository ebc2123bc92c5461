# The allocator benchmarks' workloads, sourced by run.sh, rss_alternated.sh and
# phase_mean.sh so that every script measures the same programs. Needs $here
# (this folder), $root (the repository) and $work (a scratch folder) set; builds
# the churn programs into $work and defines `cmd` (workload name -> command line,
# run through `bash -c`) and `workloads` (their order in reports).
progs="$root/allocator/tests/programs"
cc -O2 -o "$work/churn" "$here/churn.c"
cc -O2 -pthread -o "$work/churn_mt" "$here/churn_mt.c"
declare -A cmd=(
  [churn]="$work/churn"
  [churn_mt]="$work/churn_mt"
  [python3]="python3 $progs/workload.py"
  [sqlite3]="sqlite3 :memory: .read\ $progs/workload.sql"
  [git]="git -C $root log -p -n 300 --all"
  [gcc]="gcc -O2 -c $here/churn_mt.c -o $work/out.o"
)
workloads=(churn churn_mt python3 sqlite3 git gcc)
