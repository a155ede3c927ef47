#!/usr/bin/env bash
# How much of a cluster update is spent waiting for the seed, and what the cluster reaches against one process:
# the same spec trained by `train --local` (one process, global batch B) and by a seed + 2 CPU workers (B/2 each,
# --cpu-threads 1), one after the other. Prints points/s (or img/s) of both from their metrics.csv (training time
# after the first logging window), the ratio, and the workers' own account of an update (apply, gradients, all-reduce,
# waiting for the seed) from their logs. With GANCLUSTER_BENCH_REPEAT=N the pair runs N times (local, then a fresh
# cluster, local, cluster, ...: this machine's speed drifts by tens of percent between minutes), a line each, then the
# median of the ratios.
# Usage: scripts/bench-cluster-overhead.sh [ring8|dcgan28 ...]   (default: ring8 dcgan28; dcgan28 needs ../shared/data/mnist-sample)
#   GANCLUSTER_BENCH_ITERATIONS (ring8 only, default 3000), GANCLUSTER_BENCH_REPEAT (default 1)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(ring8 dcgan28)
port=${GANCLUSTER_BENCH_PORT:-4501}
d=$(mktemp -d /tmp/gancluster-overhead.XXXXXX)
bench_cluster "$d"
start() { bench_start "$1" --host 127.0.0.1 --log-dir "$d/logs" "${@:2}"; }
# Samples per second after the first logging window (which holds the start-up) to the last: column 1 is the
# iteration, column 7 the seconds since the run started.
rate() { awk -F, -v b="$2" 'NR == 2 { i0 = $1; t0 = $7 } NR > 2 { i = $1; t = $7 } END { printf "%.0f", (i - i0) * b / (t - t0) }' "$1"; }
mnist=$(cd "$root/.." && pwd)/shared/data/mnist-sample
echo "| model | global batch | iterations | one process (samples/s) | 2 workers (samples/s) | ratio | per update on the workers (last window, rank 0) |"
echo "|---|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  case $m in
    ring8) B=256; it=${GANCLUSTER_BENCH_ITERATIONS:-3000}; every=$((it / 6))
      data='{"kind":"ring8","size":100000}'; model='{"kind":"mlp","nz":8,"ngf":128,"ndf":128}' ;;
    dcgan28) B=128; it=200; every=50
      [ -d "$mnist" ] || { echo "| dcgan28 | skipped: no $mnist |"; continue; }
      data="{\"kind\":\"mnist\",\"path\":\"$mnist\",\"imageSize\":28}"; model='{"kind":"dcgan","nz":100,"ngf":32,"ndf":32}' ;;
    *) echo "unknown model $m (ring8, dcgan28)" >&2; exit 2 ;;
  esac
  spec() { printf '{"name":"%s","dataset":%s,"model":%s,"training":{"iterations":%d,"batchSize":%d,"logEvery":%d,"seed":3},"checkpoint":{"every":%d,"keep":1},"output":"%s"}\n' \
    "$m" "$data" "$model" "$it" "$B" "$every" "$it" "$1"; }
  ratios=()
  for r in $(seq "${GANCLUSTER_BENCH_REPEAT:-1}"); do
    # The local run first, alone on the machine; then a fresh cluster for the same spec.
    spec "$d/local-$m-$r" >"$d/local-$m-$r.json"
    "$root/scripts/gancluster" train --local "$d/local-$m-$r.json" >"$d/local-$m-$r.txt" 2>&1
    local_rate=$(rate "$d/local-$m-$r/metrics.csv" "$B")
    runs=$d/runs-$m-$r; mkdir -p "$runs"; pids=()
    start seed --port "$port" --state-dir "$d/state-$m-$r" "--Node:RunsRoot=$runs"
    start worker --seeds "127.0.0.1:$port" --cpu-threads 1
    start worker --seeds "127.0.0.1:$port" --cpu-threads 1
    until "$root/scripts/gancluster" status --cluster "127.0.0.1:$port" 2>/dev/null | grep -q "workers 2"; do sleep 1; done
    spec out >"$d/cluster-$m-$r.json"
    "$root/scripts/gancluster" submit "$d/cluster-$m-$r.json" --cluster "127.0.0.1:$port" --wait >"$d/cluster-$m-$r.txt" 2>&1
    cluster_rate=$(rate "$runs/out/metrics.csv" "$B")
    times=$(grep -h "rank 0, last" "$d"/logs/worker-*.log | tail -1 | sed 's/.*rank 0, last //')
    ratio=$(echo "scale=2; $cluster_rate / $local_rate" | bc)
    ratios+=("$ratio")
    echo "| $m | $B | $it | $local_rate | $cluster_rate | $ratio | $times |"
    kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
    mkdir -p "$d/logs/$m-$r" && mv "$d"/logs/worker-*.log "$d/logs/$m-$r/"
    port=$((port + 1))
  done
  [ ${#ratios[@]} -gt 1 ] && echo "median ratio ($m, ${#ratios[@]} pairs): $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')"
done
echo "logs: $d"
