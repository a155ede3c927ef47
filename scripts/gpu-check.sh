#!/usr/bin/env bash
# gpu-check.sh: the one command that exercises every GPU path of GanCluster from PUBLISHED apps (no .NET SDK needed)
# and prints one line per check:  PASS <check>: <detail>  or  FAIL <check>: <detail>,  then
# "gpu-check: N passed, M failed"; exit status 1 when any check failed, 2 for a usage error.
#
# Usage: gpu-check.sh [--device cuda|cpu] [--cli DIR] [--node DIR | --node-diff FILE] [--data DIR] [--out DIR]
#                     [--ref PATH] [--budget SECONDS] [--keep]
#   --device     cuda (default; checks run on cuda:0) or cpu (the same checks, small sizes, one thread per process)
#   --cli DIR    folder holding the published gancluster executable (src/GanCluster.Cli)
#   --node DIR   folder holding the published GanCluster.Node executable
#   --node-diff FILE  instead of --node: node-diff.tar.xz from scripts/gpu-bundle.sh, unpacked over a copy of --cli
#   --data DIR   MNIST IDX folder (default $GPU_CHECK_DATA, else <repo>/../shared/data/mnist-sample, else ./mnist-sample)
#   --out DIR    logs (default: a new temporary folder; printed at the start)
#   --ref PATH   pytorch_dcgan_ref.py (default ./pytorch_dcgan_ref.py, next to this script, or <repo>/../shared/gpu/)
#   --budget S   wall-clock budget in seconds (cuda 540, cpu 900): steps are cut short and later checks fail once spent
#   --keep       keep the work folder (training outputs, checkpoints, published apps) instead of deleting it
# Without --cli/--node, on a machine with the .NET SDK, both are published from this checkout's sources (a copy of
# them, so the repository's obj/ folders are not touched): `scripts/gpu-check.sh --device cpu` needs nothing else.
# On the lent GPU machine, after scripts/gpu-bundle.sh (see DEVELOPERS.md, "GPU measurements"):
#   bash .gpu/on-device.sh 'bash gpu-check.sh --cli $APP --node-diff node-diff.tar.xz --data mnist-sample --out $OUT/gpu-check'
#
# Checks: info, self-test, bench (GanCluster vs PyTorch, fp32 and bf16 + channels_last, two alternating rounds), train (local DCGAN-28 on MNIST),
# train-resume (stopped halfway and resumed = uninterrupted checksum), sample, export, cluster (seed + 2 workers,
# equal checksums), bench-cluster (2 workers sharing the device vs one local process), train-bf16 (bf16 + channels_last:
# train --local vs bench, and DCGAN-28 MNIST beside fp32's), bf16-quality (ring8 modes, fp32 and bf16), cluster-kill (SIGKILL of a
# worker of 3 mid-run), mixed-devices (a cpu and a cuda worker: the submit must be refused; cuda only).
# Logs of every step are under --out; training outputs under a work folder that is deleted at the end (--keep).
set -uo pipefail

# ---------------------------------------------------------------------------------------------------------------- args
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
device=cuda; cli=""; node=""; node_diff=""; data=${GPU_CHECK_DATA:-}; out=""; ref=""; budget=""; keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=${2:-}; shift 2 ;;
    --cli) cli=${2:-}; shift 2 ;;
    --node) node=${2:-}; shift 2 ;;
    --node-diff) node_diff=${2:-}; shift 2 ;;
    --data) data=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    --ref) ref=${2:-}; shift 2 ;;
    --budget) budget=${2:-}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    *) echo "gpu-check: unknown argument $1" >&2; usage ;;
  esac
done
case $device in cuda) D=cuda:0 ;; cpu) D=cpu ;; *) echo "gpu-check: --device must be cuda or cpu" >&2; exit 2 ;; esac
[ -n "$node" ] && [ -n "$node_diff" ] && { echo "gpu-check: give --node or --node-diff, not both" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=""; [ -d "$here/../src/GanCluster.Cli" ] && repo=$(cd "$here/.." && pwd)

abs() { (cd "$1" 2>/dev/null && pwd); }
if [ -z "$data" ]; then
  for d in ${repo:+"$repo/../shared/data/mnist-sample"} ./mnist-sample "$here/mnist-sample"; do
    [ -d "$d" ] && { data=$d; break; }
  done
fi
data=$(abs "${data:-/nonexistent}") || true
[ -n "$data" ] && ls "$data"/*images-idx3-ubyte* >/dev/null 2>&1 \
  || { echo "gpu-check: no MNIST IDX folder (give --data DIR holding images-idx3-ubyte[.gz])" >&2; exit 2; }
if [ -z "$ref" ]; then
  for r in ./pytorch_dcgan_ref.py "$here/pytorch_dcgan_ref.py" ${repo:+"$repo/../shared/gpu/pytorch_dcgan_ref.py"}; do
    [ -f "$r" ] && { ref=$r; break; }
  done
fi
[ -n "$ref" ] && ref=$(cd "$(dirname "$ref")" && pwd)/$(basename "$ref")
if [ -z "$out" ]; then out=$(mktemp -d /tmp/gpu-check.XXXXXX); else mkdir -p "$out" || exit 2; fi
out=$(abs "$out"); : >"$out/summary.txt"
case $device in cuda) budget=${budget:-540} ;; cpu) budget=${budget:-900} ;; esac
work=$(mktemp -d /tmp/gpu-check-work.XXXXXX)

# ------------------------------------------------------------------------------------------- processes and clean-up
# Every background process is started by bg() in THIS shell (never inside $(...)), through `timeout`, which makes
# itself a process-group leader: killing the group -PID ends the program too, whatever it started.
groups=()
cleanup() {
  local g
  for g in ${groups[@]+"${groups[@]}"}; do kill -KILL -- "-$g" 2>/dev/null; kill -KILL "$g" 2>/dev/null; done
  wait 2>/dev/null
  if [ $keep = 1 ]; then echo "gpu-check: work folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo "gpu-check: interrupted" >&2; exit 130' INT TERM HUP

# bg LOG DIR CMD...: start CMD in DIR, output to LOG, killed with SIGKILL after the whole budget at the latest.
# Sets BG_PID (also the process group to kill).
bg() {
  local log=$1 dir=$2; shift 2
  (cd "$dir" && exec timeout -s KILL $((budget + 120)) "$@") >"$log" 2>&1 </dev/null &
  BG_PID=$!
  groups+=("$BG_PID")
}
kill_group() { kill -KILL -- "-$1" 2>/dev/null; kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; forget "$1"; }
# forget PID: a process that has ended (and was waited for) leaves the list, so its pid is never signalled again.
forget() {
  local g keep_=()
  for g in ${groups[@]+"${groups[@]}"}; do [ "$g" = "$1" ] || keep_+=("$g"); done
  groups=(${keep_[@]+"${keep_[@]}"})
}

# ------------------------------------------------------------------------------------------------ results and steps
t0=$SECONDS; passed=0; failed=0
left() { echo $((budget - (SECONDS - t0))); }
# Everything this script prints on stdout also goes to $out/summary.txt (the device returns only an output tail).
report() { echo "$*"; echo "$*" >>"$out/summary.txt"; }
say() { report "  $*"; }
pass() { passed=$((passed + 1)); report "PASS $1: $2"; }
# fail NAME DETAIL [LOG...]: the last 20 lines of each log go to stderr.
fail() {
  local name=$1 detail=$2 f; shift 2
  failed=$((failed + 1)); report "FAIL $name: $detail"
  for f in "$@"; do
    [ -s "$f" ] || continue
    { echo "---- $name: last 20 lines of $f"; tail -n 20 "$f" | cut -c1-300; echo "----"; } >&2
  done
}
# check NAME FUNC [ARGS...]: FUNC sets DETAIL (and FAILLOGS for a failure); its exit status decides PASS or FAIL.
check() {
  local name=$1; shift
  DETAIL=""; FAILLOGS=()
  if "$@"; then pass "$name" "$DETAIL"; else fail "$name" "$DETAIL" ${FAILLOGS[@]+"${FAILLOGS[@]}"}; fi
}
# step LOG SECONDS CMD...: runs CMD with a timeout (cut to the budget left) in the current folder, output to LOG.
# Returns CMD's exit status (124 when it timed out; 125 when no budget was left to start it).
step() {
  local log=$1 t=$2; shift 2
  local l; l=$(left)
  [ "$t" -gt $((l - 5)) ] && t=$((l - 5))
  if [ "$t" -lt 5 ]; then echo "gpu-check: not started, the ${budget} s budget is spent: $*" >"$log"; return 125; fi
  echo "\$ $*" >"$log"
  # --foreground: the program gets a Ctrl+C from the terminal as well (it starts no children of its own).
  timeout --foreground -k 10 "$t" "$@" >>"$log" 2>&1 </dev/null
  local rc=$?
  [ $rc = 124 ] && echo "gpu-check: timed out after $t s" >>"$log"
  return $rc
}
why() { case $1 in 124) echo "timed out" ;; 125) echo "budget spent, not run" ;; *) echo "exit $1" ;; esac; }

free_port() {
  if command -v python3 >/dev/null 2>&1 && python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null; then
    return
  fi
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    ss -ltnH "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
  done
}
is_png() { [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }

# ------------------------------------------------------------------------------------------------------------ sizes
if [ $device = cuda ]; then
  NGF=64; TRAIN_B=128; TRAIN_IT=1000; TRAIN_LOG=100                                     # train, train-resume
  CL_IT=300; CL_LOG=50                                                                  # cluster (DCGAN-28)
  BENCH_ARGS=(--batch 128,1024); REF_ARGS=(--batch 128,1024 --variants "${GPU_CHECK_REF_VARIANTS:-fp32,fp32_bench,bf16_cl}")
  BC_IMAGE=64; BC_NGF=64; BC_B=1024; BC_IT=200; BC_LOG=40                               # bench-cluster
  BC_BENCH_ITERS=30
  RING_IT=6000; RING_B=256                                                              # bf16-quality (the built-in ring8)
  KILL_SECONDS=25; KILL_MIN=300; KILL_MAX=20000                                         # cluster-kill run length
  T_TRAIN=240; T_BENCH=240; T_SUBMIT=240; T_WORKERS=150
  NODE_EXTRA=()
else
  NGF=16; TRAIN_B=16; TRAIN_IT=40; TRAIN_LOG=10
  CL_IT=40; CL_LOG=10
  BENCH_ARGS=(--batch 8 --iters 3 --warmup 1 --image 32); REF_ARGS=()
  BC_IMAGE=32; BC_NGF=16; BC_B=16; BC_IT=40; BC_LOG=10; BC_BENCH_ITERS=2
  RING_IT=300; RING_B=64   # bf16 runs on libtorch's slow CPU kernels here: the paths only, not the 6000-iteration goal
  KILL_SECONDS=15; KILL_MIN=100; KILL_MAX=3000
  T_TRAIN=240; T_BENCH=240; T_SUBMIT=300; T_WORKERS=120
  NODE_EXTRA=(--Node:CpuThreads=1)
  # One libtorch thread in every process, as the nodes' CpuThreads=1: up to 4 processes share 2 cores here, and
  # spinning OpenMP threads would starve each other.
  export OMP_NUM_THREADS=1
fi
TRAIN_HALF=$((TRAIN_IT / 2))

# spec FILE NAME OUTPUT IMAGE NGF BATCH ITERATIONS CHECKPOINT_EVERY LOG_EVERY [PRECISION [MEMORY_FORMAT]]
spec() {
  cat >"$1" <<JSON
{"name": "$2", "dataset": {"kind": "mnist", "path": "$data", "imageSize": $4},
 "model": {"kind": "dcgan", "nz": 100, "ngf": $5, "ndf": $5},
 "training": {"k": 1, "iterations": $7, "batchSize": $6, "lrD": 0.0002, "lrG": 0.0002, "beta1": 0.5, "beta2": 0.999,
              "loss": "non-saturating", "seed": 1, "logEvery": $9,
              "precision": "${10:-fp32}", "memoryFormat": "${11:-contiguous}"},
 "checkpoint": {"every": $8, "keep": 3},
 "output": "$3"}
JSON
}

# --------------------------------------------------------------------------------------------------------- the apps
report "gpu-check: device $device ($D), logs in $out, work folder $work"
if [ -z "$cli" ] || { [ -z "$node" ] && [ -z "$node_diff" ]; }; then
  command -v dotnet >/dev/null 2>&1 && [ -n "$repo" ] \
    || { echo "gpu-check: give --cli DIR and --node DIR (or --node-diff FILE): no .NET SDK or checkout to publish from" >&2; exit 2; }
  echo "gpu-check: publishing GanCluster.Cli and GanCluster.Node from a copy of $repo/src (log: $out/publish.log)"
  mkdir -p "$work/src"
  (cd "$repo" && tar --exclude=bin --exclude=obj -cf - src cluster-config Directory.Build.props Directory.Packages.props) \
    | tar -xf - -C "$work/src"
  for p in Cli Node; do
    if ! timeout 900 dotnet publish "$work/src/src/GanCluster.$p/GanCluster.$p.csproj" -c Release -nologo \
         -o "$work/publish-$p" >>"$out/publish.log" 2>&1; then
      echo "gpu-check: publishing GanCluster.$p failed:" >&2; tail -n 30 "$out/publish.log" >&2; exit 2
    fi
  done
  [ -z "$cli" ] && cli=$work/publish-Cli
  [ -z "$node" ] && [ -z "$node_diff" ] && node=$work/publish-Node
fi
cli=$(abs "$cli") && [ -x "$cli/gancluster" ] || { echo "gpu-check: no gancluster executable in --cli folder" >&2; exit 2; }
if [ -n "$node_diff" ]; then
  # As scripts/gpu-bundle.sh packed it: the node's publish = the CLI's publish + the files in which it differs.
  [ -f "$node_diff" ] || { echo "gpu-check: --node-diff $node_diff: no such file" >&2; exit 2; }
  rm -rf "$work/node" && cp -r "$cli" "$work/node" && tar -xJf "$node_diff" -C "$work/node" \
    || { echo "gpu-check: could not unpack $node_diff over a copy of $cli" >&2; exit 2; }
  node=$work/node
fi
node=$(abs "$node") && [ -x "$node/GanCluster.Node" ] || { echo "gpu-check: no GanCluster.Node executable in --node folder" >&2; exit 2; }
# Bundled apps carry no libtorch: take PyTorch's (the GPU machine) or, on a dev machine, the NuGet one.
if [ -z "${TORCH_LIB_DIR:-}" ] && [ ! -f "$cli/libtorch.so" ] && [ ! -f "$cli/runtimes/linux-x64/native/libtorch.so" ]; then
  TORCH_LIB_DIR=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))' 2>/dev/null) \
    || TORCH_LIB_DIR=$(ls -d "$HOME"/.nuget/packages/libtorch-cpu-linux-x64/*/runtimes/linux-x64/native 2>/dev/null | tail -1)
  [ -n "$TORCH_LIB_DIR" ] && export TORCH_LIB_DIR && report "gpu-check: TORCH_LIB_DIR=$TORCH_LIB_DIR"
fi
CLI=$cli/gancluster; NODE=$node/GanCluster.Node
# The cluster checks run with mutual TLS, as in production: credentials of their own (the CLI finds them by this variable).
export GANCLUSTER_CREDENTIALS=$work/credentials
# train and train-resume compare checksums of separate processes: bit-reproducible kernels there (train --deterministic:
# cuDNN deterministic algorithms without autotuning, oneDNN off on the CPU), or the roundings differ from run to run.
TRAIN_FLAGS=()
if timeout 60 "$CLI" train --help 2>/dev/null | grep -q -- --deterministic; then
  TRAIN_FLAGS=(--deterministic)
elif [ $device = cuda ]; then
  TRAIN_FLAGS=(--cudnn-benchmark off)
fi
report "gpu-check: cli $cli, node $node, data $data, budget $budget s"
cd "$work" || exit 2   # whatever a step writes to its working folder lands in the work folder
t0=$SECONDS

# ============================================================================================ 1. info and self-test
chk_info() {
  local log=$out/info.log rc
  step "$log" 120 "$CLI" info; rc=$?
  local cuda bench
  cuda=$(grep -m1 '^cuda:' "$log" | sed 's/^cuda: *//')
  bench=$(grep -m1 '^cudnn.benchmark:' "$log" | sed 's/^cudnn.benchmark: *//')
  FAILLOGS=("$log")
  if [ $rc != 0 ]; then DETAIL="info $(why $rc)"; return 1; fi
  DETAIL="cuda: ${cuda:-?}; cudnn.benchmark: ${bench:-(no line)}"
  [ $device = cpu ] && return 0
  case $cuda in *"device(s)"*) ;; *) DETAIL="CUDA not usable ($DETAIL)"; return 1 ;; esac
  [ -n "$bench" ] || { DETAIL="no 'cudnn.benchmark:' line in info ($DETAIL)"; return 1; }
  # The line says whether libtorch exports at::Context::setBenchmarkCuDNN.
  if echo "$bench" | grep -qiE "not |no |missing|unavailable|absent|false"; then DETAIL="cudnn.benchmark symbol not found ($DETAIL)"; return 1; fi
  echo "$bench" | grep -qiE "found|export|settable|available|yes|true" || { DETAIL="cudnn.benchmark line not understood ($DETAIL)"; return 1; }
}
chk_self_test() {
  local log=$out/self-test.log rc
  step "$log" 240 "$CLI" info --self-test --device "$D"; rc=$?
  FAILLOGS=("$log")
  DETAIL="info --self-test --device $D: $(why $rc); $(grep -v '^\$ ' "$log" | grep . | tail -1 | cut -c1-160)"
  [ $rc = 0 ]
}

# ========================================================================================================= 2. bench
# ratio FILE_A FILE_B VARIANT_A VARIANT_B BATCH: img/s of "RESULT gancluster VARIANT_A B=" over "RESULT pytorch VARIANT_B B="
imgs() { grep -m1 "^RESULT $2 $3 B=$4 " "$1" | grep -o 'img_per_s=[0-9.]*' | cut -d= -f2; }
ratio() {
  local a b; a=$(imgs "$1" gancluster "$3" "$5"); b=$(imgs "$2" pytorch "$4" "$5")
  if [ -n "$a" ] && [ -n "$b" ]; then awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; else echo "n/a"; fi
}
# best_ratio FILE_A FILE_B BATCH: the fastest gancluster variant over the fastest pytorch variant at BATCH, named
best_ratio() {
  local a b
  a=$(grep "^RESULT gancluster [^ ]* B=$3 " "$1" | sed -E 's/^RESULT gancluster ([^ ]*) .*img_per_s=([0-9.]*).*/\2 \1/' | sort -n | tail -1)
  b=$(grep "^RESULT pytorch [^ ]* B=$3 " "$2" | sed -E 's/^RESULT pytorch ([^ ]*) .*img_per_s=([0-9.]*).*/\2 \1/' | sort -n | tail -1)
  if [ -n "$a" ] && [ -n "$b" ]; then
    awk -v a="${a%% *}" -v b="${b%% *}" -v va="${a#* }" -v vb="${b#* }" 'BEGIN { printf "%.2f (%s/%s)", (b > 0 ? a / b : 0), va, vb }'
  else echo "n/a"; fi
}
chk_bench() {
  local ok=0 round rc torch_ok=1 skip_why="" want_gc want_pt n
  local variants=fp32,fp32_bench,fp32_bench_flat,bf16_cl,bf16_cl_flat
  want_gc=$(( $(echo "${BENCH_ARGS[1]}" | tr ',' '\n' | wc -l) * $(echo $variants | tr ',' '\n' | wc -l) ))
  if ! python3 -c 'import torch' >/dev/null 2>&1; then torch_ok=0; skip_why="pytorch not installed, skipped side-by-side"
  elif [ -z "$ref" ]; then torch_ok=0; skip_why="no pytorch_dcgan_ref.py (--ref), skipped side-by-side"
  elif [ $device = cpu ]; then torch_ok=0; skip_why="pytorch_dcgan_ref.py runs on CUDA only, skipped side-by-side"
  fi
  want_pt=$(( $(echo "${REF_ARGS[1]:-}" | tr ',' '\n' | wc -l) * $(echo "${REF_ARGS[3]:-}" | tr ',' '\n' | wc -l) ))
  for round in 1 2; do
    local gl=$out/bench-gancluster-$round.log pl=$out/bench-pytorch-$round.log
    step "$gl" "$T_BENCH" "$CLI" bench --device "$D" "${BENCH_ARGS[@]}" --variants "$variants"; rc=$?
    grep '^RESULT\|^note' "$gl" | sed "s/^/  round $round: /" | tee -a "$out/summary.txt"
    n=$(grep -c '^RESULT gancluster' "$gl")
    if [ $rc != 0 ] || [ "$n" -lt "$want_gc" ]; then ok=1; FAILLOGS+=("$gl"); DETAIL+="gancluster round $round: $(why $rc), $n/$want_gc RESULT lines; "; fi
    [ $torch_ok = 1 ] || continue
    (cd "$(dirname "$ref")" && step "$pl" "$T_BENCH" python3 "$ref" "${REF_ARGS[@]}"); rc=$?
    grep '^RESULT' "$pl" | sed "s/^/  round $round: /" | tee -a "$out/summary.txt"
    n=$(grep -c '^RESULT pytorch' "$pl")
    if [ $rc != 0 ] || [ "$n" -lt "$want_pt" ]; then ok=1; FAILLOGS+=("$pl"); DETAIL+="pytorch round $round: $(why $rc), $n/$want_pt RESULT lines; "; fi
  done
  if [ $torch_ok = 1 ]; then
    local r1a r2a r1b r2b r1c r2c r1d r2d
    r1a=$(ratio "$out/bench-gancluster-1.log" "$out/bench-pytorch-1.log" fp32 fp32 1024)
    r2a=$(ratio "$out/bench-gancluster-2.log" "$out/bench-pytorch-2.log" fp32 fp32 1024)
    r1b=$(ratio "$out/bench-gancluster-1.log" "$out/bench-pytorch-1.log" fp32_bench fp32_bench 128)
    r2b=$(ratio "$out/bench-gancluster-2.log" "$out/bench-pytorch-2.log" fp32_bench fp32_bench 128)
    r1c=$(ratio "$out/bench-gancluster-1.log" "$out/bench-pytorch-1.log" bf16_cl bf16_cl 1024)
    r2c=$(ratio "$out/bench-gancluster-2.log" "$out/bench-pytorch-2.log" bf16_cl bf16_cl 1024)
    r1d=$(best_ratio "$out/bench-gancluster-1.log" "$out/bench-pytorch-1.log" 128)
    r2d=$(best_ratio "$out/bench-gancluster-2.log" "$out/bench-pytorch-2.log" 128)
    say "img/s ratio gancluster / pytorch                         round 1   round 2"
    say "fp32 / fp32, B=1024                                         $r1a      $r2a"
    say "fp32_bench / fp32 + cudnn.benchmark, B=128                  $r1b      $r2b"
    say "bf16_cl / bf16 autocast + channels_last, B=1024 (goal 1.0)  $r1c      $r2c"
    say "best variant / best variant, B=128 (goal 1.0)               $r1d      $r2d"
    DETAIL+="gancluster/pytorch img/s: fp32 B=1024 $r1a, $r2a; fp32_bench B=128 $r1b, $r2b; bf16_cl B=1024 $r1c, $r2c; best B=128 $r1d, $r2d"
  else
    [ $ok = 0 ] && DETAIL+="gancluster bench ran twice ($want_gc RESULT lines each); "
    DETAIL+=$skip_why
  fi
  return $ok
}

# ====================================================================================== 3. train --local and resume
TRAIN_RUN=$work/train-full
checksum_of() { grep -oE 'checksum: ([0-9a-f]{64})' "$1" | tail -1 | grep -oE '[0-9a-f]{64}'; }
chk_train() {
  local log=$out/train.log rc
  spec "$work/train.json" train-check "$TRAIN_RUN" 28 "$NGF" "$TRAIN_B" "$TRAIN_IT" "$TRAIN_HALF" "$TRAIN_LOG"
  (cd "$work" && step "$log" "$T_TRAIN" "$CLI" train --local "$work/train.json" --device "$D" ${TRAIN_FLAGS[@]+"${TRAIN_FLAGS[@]}"}); rc=$?
  FAILLOGS=("$log")
  cp "$TRAIN_RUN/metrics.csv" "$out/train-metrics.csv" 2>/dev/null
  local png; png=$(ls "$TRAIN_RUN"/samples/*.png 2>/dev/null | tail -1)
  [ -n "$png" ] && cp "$png" "$out/train-samples.png"
  local stats; stats=$(awk -F, 'NR > 1 { n++; for (i = 2; i <= 5; i++) if ($i !~ /^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/) bad++
                                          last = sprintf("loss_d %s loss_g %s", $2, $3) }
                                END { printf "%d %d %s", n, bad, last }' "$TRAIN_RUN/metrics.csv" 2>/dev/null)
  local rows=${stats%% *} rest=${stats#* }; local bad=${rest%% *} last=${rest#* }
  local speed; speed=$(grep -o 'img/s: [0-9]*' "$log" | tail -1)
  DETAIL="$TRAIN_IT iterations, batch $TRAIN_B on $D: $(why $rc); metrics rows ${rows:-0}, non-finite ${bad:-?}; last $last; ${speed:-no img/s}; samples $( [ -n "$png" ] && is_png "$png" && echo "$(basename "$png") ok" || echo missing)"
  [ $rc = 0 ] && [ "${rows:-0}" -gt 0 ] && [ "${bad:-1}" = 0 ] && [ -n "$png" ] && is_png "$png"
}
chk_train_resume() {
  local full split=$work/train-split l1=$out/train-half.log l2=$out/train-resume.log rc1 rc2
  FAILLOGS=("$l1" "$l2")
  [ -f "$out/train.log" ] && full=$(checksum_of "$out/train.log")
  (cd "$work" && step "$l1" "$T_TRAIN" "$CLI" train --local "$work/train.json" --device "$D" --iterations "$TRAIN_HALF" --output "$split" ${TRAIN_FLAGS[@]+"${TRAIN_FLAGS[@]}"}); rc1=$?
  (cd "$work" && step "$l2" "$T_TRAIN" "$CLI" train --local "$work/train.json" --device "$D" --output "$split" ${TRAIN_FLAGS[@]+"${TRAIN_FLAGS[@]}"}); rc2=$?
  local resumed; resumed=$(checksum_of "$l2")
  local from; from=$(grep -o 'resuming from [^ ]*' "$l2" | head -1)
  # Same checkpoint at the halfway point in both runs? (tells a resume bug from device non-determinism)
  local h; h=$(printf 'iter-%08d' "$TRAIN_HALF")
  local same_half="n/a"
  if [ -f "$TRAIN_RUN/checkpoints/$h/G.bin" ] && [ -f "$split/checkpoints/$h/G.bin" ]; then
    cmp -s "$TRAIN_RUN/checkpoints/$h/G.bin" "$split/checkpoints/$h/G.bin" && cmp -s "$TRAIN_RUN/checkpoints/$h/D.bin" "$split/checkpoints/$h/D.bin" \
      && same_half=identical || same_half=different
  fi
  local fin; fin=$(printf 'iter-%08d' "$TRAIN_IT"); local same_end="n/a"
  if [ -f "$TRAIN_RUN/checkpoints/$fin/G.bin" ] && [ -f "$split/checkpoints/$fin/G.bin" ]; then
    cmp -s "$TRAIN_RUN/checkpoints/$fin/G.bin" "$split/checkpoints/$fin/G.bin" && same_end=identical || same_end=different
  fi
  local files="G/D at $TRAIN_HALF: $same_half, G at $TRAIN_IT: $same_end"
  if [ $rc1 != 0 ] || [ $rc2 != 0 ]; then DETAIL="--iterations $TRAIN_HALF: $(why $rc1), resume: $(why $rc2)"; return 1; fi
  [ -n "$from" ] || { DETAIL="the second run did not resume (no 'resuming from' line); $files"; return 1; }
  if [ -z "${full:-}" ] || [ -z "$resumed" ]; then
    DETAIL="no 'checksum: <64 hex>' line in train output (uninterrupted: ${full:-none}, resumed: ${resumed:-none}); checkpoint files: $files"
    return 1
  fi
  DETAIL="$TRAIN_HALF + $((TRAIN_IT - TRAIN_HALF)) iterations ($from) vs $TRAIN_IT: checksum ${resumed:0:16}… vs ${full:0:16}…; $files"
  [ "$full" = "$resumed" ] && return 0
  [ "$same_half" = different ] && DETAIL+="; the halfway checkpoints of the two runs already differ, before any resume: training on $D is not bit-reproducible between processes (non-deterministic kernels), so the checksums cannot judge the resume"
  return 1
}

# ============================================================================================== 4. sample and export
has_checkpoint() { ls -d "$TRAIN_RUN"/checkpoints/iter-* >/dev/null 2>&1; }
chk_sample() {
  has_checkpoint || { DETAIL="depends on train: no checkpoint under $TRAIN_RUN"; return 1; }
  local log=$out/sample.log png=$out/sample-16.png rc
  step "$log" 120 "$CLI" sample --run "$TRAIN_RUN" --count 16 --out "$png" --device "$D"; rc=$?
  FAILLOGS=("$log")
  DETAIL="sample --count 16 on $D: $(why $rc); $(basename "$png") $( is_png "$png" && echo "$(stat -c %s "$png") bytes, PNG" || echo "missing or not a PNG")"
  [ $rc = 0 ] && is_png "$png"
}
chk_export() {
  has_checkpoint || { DETAIL="depends on train: no checkpoint under $TRAIN_RUN"; return 1; }
  local log=$out/export.log dir=$work/export rc f missing="" tensors=""
  step "$log" 120 "$CLI" export --run "$TRAIN_RUN" --out "$dir"; rc=$?
  FAILLOGS=("$log")
  for f in generator.safetensors discriminator.safetensors spec.json; do [ -s "$dir/$f" ] || missing+=" $f"; done
  cp "$dir/spec.json" "$out/export-spec.json" 2>/dev/null
  if [ -z "$missing" ] && command -v python3 >/dev/null 2>&1; then
    # The safetensors header: 8 bytes little-endian length, then JSON naming each tensor.
    tensors=$(python3 -c 'import json,struct,sys
for p in sys.argv[1:]:
    b=open(p,"rb").read(); n=struct.unpack("<Q",b[:8])[0]; h=json.loads(b[8:8+n]); h.pop("__metadata__",None)
    print(len(h), end=" ")' "$dir/generator.safetensors" "$dir/discriminator.safetensors" 2>>"$log") || tensors="unreadable"
  fi
  DETAIL="export: $(why $rc); ${missing:+missing:$missing; }tensors in G, D: ${tensors:-not counted}"
  [ $rc = 0 ] && [ -z "$missing" ] && [ "$tensors" != unreadable ]
}

# ========================================================================================================= 5. cluster
CL=$work/cluster; SEED_PORT=""; SEED_PID=""; W_PIDS=(); W_LOGS=(); KILLED_LOG=""; CLUSTER_UP=0
status() { timeout -k 5 20 "$CLI" status --cluster "127.0.0.1:$SEED_PORT" --connect-timeout 5 2>&1; }
common_flags() { echo "--Node:Host=127.0.0.1 --Node:Seeds=127.0.0.1:$SEED_PORT --Node:DowningStableAfterSeconds=10 --Node:Credentials=$GANCLUSTER_CREDENTIALS"; }
start_worker() {  # start_worker DEVICE [EXTRA...]
  local dev=$1; shift
  local i=$((${#W_LOGS[@]} + 1))
  # shellcheck disable=SC2046
  bg "$out/worker$i.log" "$CL" "$NODE" --Node:Roles=worker --Node:Port=0 --Node:Devices="$dev" $(common_flags) "$@"
  W_PIDS+=("$BG_PID"); W_LOGS+=("$out/worker$i.log")
}
# wait_status SECONDS PATTERN: polls `status` until its output matches PATTERN (extended regex); output in STATUS.
wait_status() {
  local until=$((SECONDS + $1)) pattern=$2
  STATUS=""
  while [ $SECONDS -lt $until ] && [ "$(left)" -gt 5 ]; do
    STATUS=$(status)
    echo "$STATUS" | grep -qE "$pattern" && return 0
    [ -n "$SEED_PID" ] && ! kill -0 "$SEED_PID" 2>/dev/null && { STATUS="the seed exited: $STATUS"; return 1; }
    local p alive=0
    for p in ${W_PIDS[@]+"${W_PIDS[@]}"}; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || { STATUS="every worker exited ($(grep -h -m1 -i 'error' ${W_LOGS[@]+"${W_LOGS[@]}"} 2>/dev/null | head -1 | cut -c1-200)): $STATUS"; return 1; }
    sleep 1
  done
  [ "$(left)" -gt 5 ] || STATUS="(the ${budget} s budget is spent) $STATUS"
  return 1
}
worker_id() { grep -m1 -oE 'worker [^ ]+ on ' "$1" | cut -d' ' -f2; }
run_id() { grep -m1 -oE 'submitted run [^ ]+' "$1" | cut -d' ' -f3; }
final_checksum() { grep -oE 'final parameter checksum [0-9a-f]{64}' "$1" | tail -1 | grep -oE '[0-9a-f]{64}$'; }
# rank_checksums RUN_ID LOG...: "rank=checksum" of each log that has one for that run
rank_checksums() {
  local id=$1 f; shift
  for f in "$@"; do
    grep -E "run $id: rank [0-9]+ final parameter checksum [0-9a-f]{64}" "$f" 2>/dev/null \
      | sed -E 's/.*rank ([0-9]+) final parameter checksum ([0-9a-f]{64}).*/\1=\2/' | tail -1
  done
}
# submit NAME SPEC: follows the run with --wait (log under $out/NAME.log); returns submit's exit status.
submit() {
  (cd "$CL" && step "$out/$1.log" "$T_SUBMIT" "$CLI" submit "$2" --cluster "127.0.0.1:$SEED_PORT" --wait --connect-timeout 10)
}
# all_equal SUBMIT_CHECKSUM rank=sum...: every rank's checksum equals the first argument
all_equal() { local want=$1 x; shift; for x in "$@"; do [ "${x#*=}" = "$want" ] || return 1; done; }

chk_cluster() {
  mkdir -p "$CL"
  if ! "$CLI" certs create --out "$GANCLUSTER_CREDENTIALS" >"$out/certs.log" 2>&1; then
    DETAIL="certs create failed: $(tail -1 "$out/certs.log")"; return 1
  fi
  SEED_PORT=$(free_port)
  # shellcheck disable=SC2046
  bg "$out/seed.log" "$CL" "$NODE" --Node:Roles=seed --Node:Port="$SEED_PORT" --Node:StateDir="$CL/state" $(common_flags)
  SEED_PID=$BG_PID
  METRICS_PORT=$(free_port)   # the first worker serves its metrics (check "watch")
  start_worker "$D" --Node:MetricsPort="$METRICS_PORT" "${NODE_EXTRA[@]+"${NODE_EXTRA[@]}"}"
  start_worker "$D" "${NODE_EXTRA[@]+"${NODE_EXTRA[@]}"}"
  FAILLOGS=("$out/seed.log" "${W_LOGS[@]}")
  local t=$SECONDS
  if ! wait_status "$T_WORKERS" 'workers 2'; then
    DETAIL="status did not show 'workers 2' within $T_WORKERS s (last: $(echo "$STATUS" | head -1))"; return 1
  fi
  CLUSTER_UP=1
  local up=$((SECONDS - t))
  spec "$CL/cluster.json" cluster-check runs/cluster 28 "$NGF" "$TRAIN_B" "$CL_IT" $((CL_IT / 2)) "$CL_LOG"
  local rc; submit cluster "$CL/cluster.json"; rc=$?
  FAILLOGS=("$out/cluster.log" "${FAILLOGS[@]}")
  local id sum ranks; id=$(run_id "$out/cluster.log"); sum=$(final_checksum "$out/cluster.log")
  ranks=$(rank_checksums "${id:-none}" "${W_LOGS[@]}" | sort | tr '\n' ' ')
  DETAIL="2 workers up in ${up} s; run ${id:-?} of $CL_IT iterations on $D: $(why $rc); submit checksum ${sum:0:16}…; workers ${ranks:-none}"
  [ $rc = 0 ] || return 1
  [ -n "$sum" ] && [ "$(echo $ranks | wc -w)" = 2 ] && all_equal "$sum" $ranks \
    || { DETAIL="checksums differ or missing: $DETAIL"; return 1; }
  DETAIL="2 workers up in ${up} s; run ${id} ($CL_IT iterations, batch $TRAIN_B on $D) completed; ranks 0 and 1 and submit: checksum ${sum:0:16}…"
}

# Watching runs (issue 14): the first worker's Prometheus metrics after the cluster run (update and all-reduce counts,
# and on CUDA the GPU memory gauges, read with cudaMemGetInfo), the report page and plot of the train check's run, and
# its image-quality score with `eval`.
chk_watch() {
  [ $CLUSTER_UP = 1 ] || { DETAIL="depends on cluster: the cluster did not start"; return 1; }
  local m=$out/worker1-metrics.txt
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
    "http://127.0.0.1:$METRICS_PORT/metrics" >"$m" 2>"$m.err" || { DETAIL="no metrics at 127.0.0.1:$METRICS_PORT: $(tail -1 "$m.err")"; return 1; }
  FAILLOGS=("$m" "${W_LOGS[0]}")
  total() { awk -v n="$1" 'index($0, n) == 1 { s += $NF } END { printf "%.0f", s }' "$m"; }
  local updates allreduces gpu; updates=$(total gancluster_worker_update_duration_seconds_count); allreduces=$(total gancluster_allreduce_duration_seconds_count)
  gpu=$(total gancluster_gpu_memory_used_bytes)
  local rl=$out/watch-report.log el=$out/watch-eval.log rc1 rc2 rc3
  step "$rl" 120 "$CLI" report --run "$TRAIN_RUN" --out "$out/train-report.html"; rc1=$?
  step "$rl.plot" 120 "$CLI" plot --run "$TRAIN_RUN" --out "$out/train-curves.png"; rc2=$?
  step "$el" "$T_TRAIN" "$CLI" eval --run "$TRAIN_RUN" --count 1000 --device "$D"; rc3=$?
  FAILLOGS+=("$rl" "$el")
  local score; score=$(grep -m1 -E 'FD [0-9.]+' "$el" | cut -c1-160)
  DETAIL="worker 1: $updates updates, $allreduces all-reduces, GPU memory used $((gpu / 1048576)) MiB; report $(why $rc1), plot $(why $rc2), eval $(why $rc3): ${score:-no score}"
  [ "$updates" -gt 0 ] && [ "$allreduces" -gt 0 ] || return 1
  [ $device = cpu ] || [ "$gpu" -gt 0 ] || { DETAIL="no GPU memory gauge on a CUDA worker: $DETAIL"; return 1; }
  [ $rc1 = 0 ] && [ $rc2 = 0 ] && [ $rc3 = 0 ] && [ -s "$out/train-report.html" ] && [ -n "$score" ]
}

# mean img/s of the logged windows after the first (which holds the warm-up)
mean_imgs() { grep -o 'img/s: [0-9]*' "$1" | awk 'NR > 1 { s += $2; n++ } END { printf "%.0f", n ? s / n : 0 }'; }
chk_bench_cluster() {
  [ $CLUSTER_UP = 1 ] || { DETAIL="depends on cluster: the cluster did not start"; return 1; }
  local ll=$out/bench-cluster-local.log cl=bench-cluster-2workers rc1 rc2
  spec "$work/bc-local.json" bench-local "$work/bc-local" "$BC_IMAGE" "$BC_NGF" "$BC_B" "$BC_IT" "$BC_IT" "$BC_LOG"
  spec "$CL/bc-cluster.json" bench-cluster runs/bench-cluster "$BC_IMAGE" "$BC_NGF" "$BC_B" "$BC_IT" "$BC_IT" "$BC_LOG"
  (cd "$work" && step "$ll" "$T_TRAIN" "$CLI" train --local "$work/bc-local.json" --device "$D"); rc1=$?
  # The training loop against bench's bare step on the same model (MNIST: 1 channel): what the loop itself costs.
  local bl=$out/bench-cluster-bench.log rc3
  step "$bl" "$T_BENCH" "$CLI" bench --device "$D" --batch "$BC_B" --image "$BC_IMAGE" --channels 1 --ngf "$BC_NGF" --variants fp32_bench \
    --iters "$BC_BENCH_ITERS" --warmup 3; rc3=$?
  submit "$cl" "$CL/bc-cluster.json"; rc2=$?
  FAILLOGS=("$ll" "$bl" "$out/$cl.log")
  local a b r c t; a=$(mean_imgs "$ll"); b=$(mean_imgs "$out/$cl.log")
  c=$(grep -o 'img_per_s=[0-9]*' "$bl" | head -1 | cut -d= -f2); c=${c:-0}
  r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }')
  t=$(awk -v a="$a" -v c="$c" 'BEGIN { printf "%.2f", (c > 0 ? a / c : 0) }')
  [ "$a" -gt 0 ] && say "RESULT local B=$BC_B img_per_s=$a"
  [ "$c" -gt 0 ] && say "RESULT bench fp32_bench nc=1 B=$BC_B img_per_s=$c (train --local / bench: $t)"
  [ "$b" -gt 0 ] && say "RESULT cluster workers=2 B=$((BC_B / 2))x2 img_per_s=$b (cluster / local: $r)"
  DETAIL="DCGAN-$BC_IMAGE MNIST, $BC_IT iterations on $D: local B=$BC_B $a img/s ($(why $rc1)), bench $c img/s ($(why $rc3)), seed + 2 workers sharing $D at $((BC_B / 2)) each $b img/s ($(why $rc2)); local/bench $t, cluster/local $r"
  [ $rc1 = 0 ] && [ $rc2 = 0 ] && [ $rc3 = 0 ] && [ "$a" -gt 0 ] && [ "$b" -gt 0 ]
}

# bf16 + channels_last: train --local against bench's bare step on the same model (goal: ≥ 0.95), and DCGAN-28 on MNIST
# in bf16 with the train check's spec and budget: final losses and sample grids side by side with fp32's.
chk_train_bf16() {
  local ll=$out/train-bf16-local.log bl=$out/train-bf16-bench.log tl=$out/train-bf16.log rc1 rc2 rc3
  spec "$work/bf16-local.json" bf16-local "$work/bf16-local" "$BC_IMAGE" "$BC_NGF" "$BC_B" "$BC_IT" "$BC_IT" "$BC_LOG" bf16 channels_last
  (cd "$work" && step "$ll" "$T_TRAIN" "$CLI" train --local "$work/bf16-local.json" --device "$D"); rc1=$?
  step "$bl" "$T_BENCH" "$CLI" bench --device "$D" --batch "$BC_B" --image "$BC_IMAGE" --channels 1 --ngf "$BC_NGF" --variants bf16_cl \
    --iters "$BC_BENCH_ITERS" --warmup 3; rc2=$?
  local run=$work/train-bf16
  spec "$work/train-bf16.json" train-bf16 "$run" 28 "$NGF" "$TRAIN_B" "$TRAIN_IT" "$TRAIN_HALF" "$TRAIN_LOG" bf16 channels_last
  (cd "$work" && step "$tl" "$T_TRAIN" "$CLI" train --local "$work/train-bf16.json" --device "$D"); rc3=$?
  FAILLOGS=("$ll" "$bl" "$tl")
  cp "$run/metrics.csv" "$out/train-bf16-metrics.csv" 2>/dev/null
  local png; png=$(ls "$run"/samples/*.png 2>/dev/null | tail -1)
  [ -n "$png" ] && cp "$png" "$out/train-bf16-samples.png"
  local a c t; a=$(mean_imgs "$ll"); c=$(grep -o 'img_per_s=[0-9]*' "$bl" | head -1 | cut -d= -f2); c=${c:-0}
  t=$(awk -v a="$a" -v c="$c" 'BEGIN { printf "%.2f", (c > 0 ? a / c : 0) }')
  last_window() { awk -F, 'NR > 1 { l = sprintf("loss_d %s loss_g %s D(x) %s D(G(z)) %s", $2, $3, $4, $5) } END { print l }' "$1" 2>/dev/null; }
  say "RESULT local bf16_cl B=$BC_B img_per_s=$a; bench bf16_cl nc=1 img_per_s=$c (train --local / bench: $t, goal 0.95)"
  say "DCGAN-28 MNIST, $TRAIN_IT iterations at batch $TRAIN_B, last window: fp32 $(last_window "$out/train-metrics.csv")"
  say "                                                 bf16 $(last_window "$out/train-bf16-metrics.csv")"
  say "sample grids: $out/train-samples.png (fp32), $out/train-bf16-samples.png (bf16)"
  DETAIL="bf16 + channels_last on $D: local B=$BC_B $a img/s ($(why $rc1)), bench $c img/s ($(why $rc2)), local/bench $t; DCGAN-28 MNIST bf16 $(why $rc3)"
  [ $rc1 = 0 ] && [ $rc2 = 0 ] && [ $rc3 = 0 ] && [ "$a" -gt 0 ] && [ -n "$png" ] && is_png "$png"
}

# The built-in ring8 spec in fp32 and in bf16 (goal: bf16 keeps at least 7 of 8 modes).
ring8_spec() {
  cat >"$1" <<JSON
{"name": "$2", "dataset": {"kind": "ring8"}, "model": {"kind": "mlp", "nz": 8, "ngf": 128, "ndf": 128},
 "training": {"iterations": $RING_IT, "batchSize": $RING_B, "lrD": 0.001, "lrG": 0.001, "beta1": 0.5, "lrDecay": "linear",
              "seed": 3, "logEvery": $((RING_IT / 4)), "precision": "$4"},
 "checkpoint": {"every": $RING_IT, "keep": 1}, "output": "$3"}
JSON
}
chk_bf16_quality() {
  local p modes=() rcs=()
  for p in fp32 bf16; do
    ring8_spec "$work/ring8-$p.json" "ring8-$p" "$work/ring8-$p" $p
    (cd "$work" && step "$out/ring8-$p.log" "$T_TRAIN" "$CLI" train --local "$work/ring8-$p.json" --device "$D"); rcs+=($?)
    modes+=("$(grep -o 'modes [0-9]*/8, high-quality [0-9.]* %' "$out/ring8-$p.log" | tail -1)")
  done
  FAILLOGS=("$out/ring8-fp32.log" "$out/ring8-bf16.log")
  say "ring8 ($RING_IT iterations, batch $RING_B): fp32 ${modes[0]:-?}; bf16 ${modes[1]:-?}"
  DETAIL="ring8 on $D, $RING_IT iterations: fp32 ${modes[0]:-no result} ($(why ${rcs[0]})), bf16 ${modes[1]:-no result} ($(why ${rcs[1]}))"
  [ "${rcs[0]}" = 0 ] && [ "${rcs[1]}" = 0 ] && [ -n "${modes[1]}" ] || return 1
  # The 7-of-8 goal holds for the full 6000-iteration run; the CPU's short run only proves the path.
  if [ $device = cuda ]; then
    local n; n=$(echo "${modes[1]}" | grep -oE '^modes [0-9]+' | grep -oE '[0-9]+')
    [ "${n:-0}" -ge 7 ] || { DETAIL="bf16 kept fewer than 7 modes: $DETAIL"; return 1; }
  fi
}

chk_cluster_kill() {
  [ $CLUSTER_UP = 1 ] || { DETAIL="depends on cluster: the cluster did not start"; return 1; }
  start_worker "$D" "${NODE_EXTRA[@]+"${NODE_EXTRA[@]}"}"
  FAILLOGS=("$out/seed.log" "${W_LOGS[@]}")
  wait_status "$T_WORKERS" 'workers 3' || { DETAIL="status did not show 'workers 3' (last: $(echo "$STATUS" | head -1))"; return 1; }
  # Long enough that the kill lands mid-run: size it from the speed of the cluster check's last window (2 workers).
  local ips its every
  ips=$(grep -o 'img/s: [0-9]*' "$out/cluster.log" 2>/dev/null | tail -1 | awk -v b="$TRAIN_B" '{ print $2 / b }')
  its=$(awk -v r="${ips:-0}" -v s=$KILL_SECONDS -v lo=$KILL_MIN -v hi=$KILL_MAX \
        'BEGIN { n = int(r * s / 20) * 20; if (n < lo) n = lo; if (n > hi) n = hi; print n }')
  every=$((its / 20))
  spec "$CL/kill.json" kill-check runs/kill 28 "$NGF" "$TRAIN_B" "$its" $((its / 2)) "$every"
  local log=$out/cluster-kill.log
  (cd "$CL" && exec timeout -k 10 "$T_SUBMIT" "$CLI" submit "$CL/kill.json" --cluster "127.0.0.1:$SEED_PORT" --wait) >"$log" 2>&1 </dev/null &
  local sp=$!; groups+=("$sp")
  FAILLOGS=("$log" "${FAILLOGS[@]}")
  # Wait for a progress line at a quarter of the run or later, then kill a worker of rank >= 1.
  local at=$((its / 4)) it=0 until=$((SECONDS + T_SUBMIT))
  while kill -0 "$sp" 2>/dev/null && [ $SECONDS -lt $until ]; do
    it=$(grep -oE '^\[[0-9]+/' "$log" | tail -1 | tr -d '[/'); it=${it:-0}
    [ "$it" -ge $at ] && break
    sleep 0.2
  done
  local id victim="" vlog="" vpid="" i
  id=$(run_id "$log")
  if [ "$it" -ge $at ] && kill -0 "$sp" 2>/dev/null; then
    STATUS=$(status)
    echo "$STATUS" >"$out/cluster-kill-status.txt"
    victim=$(echo "$STATUS" | grep -E "rank [1-9][0-9]* of run $id" | head -1 | awk '{ print $2 }')
    for i in "${!W_LOGS[@]}"; do
      [ -n "$victim" ] && [ "$(worker_id "${W_LOGS[$i]}")" = "$victim" ] && { vlog=${W_LOGS[$i]}; vpid=${W_PIDS[$i]}; }
    done
  fi
  if [ -z "$vpid" ]; then
    wait "$sp"; forget "$sp"; DETAIL="no worker of rank >= 1 to kill at iteration $it of $its (run ${id:-?}; status: $(head -1 "$out/cluster-kill-status.txt" 2>/dev/null))"
    return 1
  fi
  local kill_it; kill_it=$(echo "$STATUS" | grep -oE 'iteration [0-9]+' | head -1 | cut -d' ' -f2)
  kill_group "$vpid"
  local rank; rank=$(echo "$STATUS" | grep -F "worker $victim " | grep -oE 'rank [0-9]+' | cut -d' ' -f2)
  wait "$sp"; local rc=$?; forget "$sp"
  local survivors=() sum ranks
  for i in "${!W_LOGS[@]}"; do [ "${W_LOGS[$i]}" = "$vlog" ] || survivors+=("${W_LOGS[$i]}"); done
  sum=$(final_checksum "$log"); ranks=$(rank_checksums "${id:-none}" "${survivors[@]}" | sort | tr '\n' ' ')
  local noted; noted=$(grep -cE 'left|failed|re-forming|failure' "$log")
  DETAIL="$its iterations on 3 workers, SIGKILL of rank $rank ($victim) at iteration ${kill_it:-?}: submit $(why $rc); $(tail -1 "$log" | cut -c1-160)"
  [ $rc = 0 ] || return 1
  [ "$noted" -gt 0 ] || { DETAIL="the run completed but never noted the lost worker: $DETAIL"; return 1; }
  [ -n "$sum" ] && [ "$(echo $ranks | wc -w)" = 2 ] && all_equal "$sum" $ranks \
    || { DETAIL="survivors' checksums differ or missing (${ranks:-none}): $DETAIL"; return 1; }
  DETAIL="$its iterations, batch $TRAIN_B, 3 workers on $D; SIGKILL of rank $rank at iteration ${kill_it:-?}; completed on the 2 survivors with equal checksums ${sum:0:16}…"
  KILLED_LOG=$vlog
}

# =================================================================================================== 6. mixed devices
chk_mixed() {
  if [ $device = cpu ]; then DETAIL="skipped (cpu only)"; return 0; fi
  [ $CLUSTER_UP = 1 ] || { DETAIL="depends on cluster: the cluster did not start"; return 1; }
  start_worker cpu --Node:CpuThreads=2
  FAILLOGS=("$out/seed.log" "${W_LOGS[-1]}")
  wait_status "$T_WORKERS" '\(cpu\)' || { DETAIL="the cpu worker did not register (status: $(echo "$STATUS" | head -1))"; return 1; }
  wait_status 60 'state Idle' || { DETAIL="the coordinator is not idle: $(echo "$STATUS" | head -1)"; return 1; }
  spec "$CL/mixed.json" mixed-check runs/mixed 28 16 32 20 20 10
  local rc; submit mixed-devices "$CL/mixed.json"; rc=$?
  local log=$out/mixed-devices.log
  FAILLOGS=("$log" "${FAILLOGS[@]}")
  local said; said=$(grep -v '^\$ ' "$log")   # what submit printed (the log's first line is the command)
  local msg; msg=$(echo "$said" | grep -m1 -iE 'error|refused' | cut -c1-240)
  local kinds; kinds=$(echo "$STATUS" | grep -oE '\((cpu|cuda[^)]*)\)' | sort -u | tr '\n' ' ')
  if [ $rc = 0 ]; then DETAIL="not refused: a run on workers $kinds completed (exit 0)"; return 1; fi
  [ $rc = 124 ] && { DETAIL="submit timed out instead of being refused (workers $kinds)"; return 1; }
  DETAIL="workers $kinds; submit exit $rc: ${msg:-(no error line)}"
  echo "$said" | grep -qi 'cpu' && echo "$said" | grep -qi 'cuda' || { DETAIL="refused, but the message does not name both device kinds: $DETAIL"; return 1; }
}

# ================================================================================================================ run
check info chk_info
check self-test chk_self_test
check bench chk_bench
check train chk_train
check train-resume chk_train_resume
check sample chk_sample
check export chk_export
check cluster chk_cluster
check watch chk_watch
check bench-cluster chk_bench_cluster
check cluster-kill chk_cluster_kill
check mixed-devices chk_mixed
check train-bf16 chk_train_bf16
check bf16-quality chk_bf16_quality
report "gpu-check: $((SECONDS - t0)) s of checks (budget $budget s), logs in $out"
report "gpu-check: $passed passed, $failed failed"
[ $failed = 0 ]
