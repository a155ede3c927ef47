#!/usr/bin/env bash
# One device, same spec, side by side: DCGAN-64 (MNIST resized to 64x64) trained by one local process at batch B,
# then by a seed and 2 worker processes sharing the device at B/2 each. Prints the per-window lines of both and a
# RESULT line each (mean img/s over the windows after the first). Runs published apps, so it needs no .NET SDK.
# Usage: scripts/gpu-bench-cluster.sh CLI_DIR NODE_DIR MNIST_DIR [device=cuda:0] [batch=1024] [iterations=200]
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,5p "$0" >&2; exit 2; }
cli=$1/GanCluster.Cli; node=$2/GanCluster.Node; data=$(cd "$3" && pwd)
device=${4:-cuda:0}; batch=${5:-1024}; iterations=${6:-200}; every=$(( iterations / 5 > 0 ? iterations / 5 : 1 ))
work=$(mktemp -d); port=$(( 20000 + RANDOM % 20000 ))
pids=()
trap 'kill ${pids[@]+"${pids[@]}"} 2>/dev/null || true' EXIT

spec() {
  cat >"$work/$1.json" <<JSON
{"name": "$1", "dataset": {"kind": "mnist", "path": "$data", "imageSize": 64},
 "model": {"kind": "dcgan", "nz": 100, "ngf": 64, "ndf": 64},
 "training": {"iterations": $iterations, "batchSize": $batch, "seed": 1, "logEvery": $every},
 "checkpoint": {"every": $iterations, "keep": 1}, "output": "$work/$1"}
JSON
}

# Mean img/s of the logged windows after the first (which holds the warm-up).
mean() { grep -o 'img/s: [0-9]*' | awk 'NR > 1 { s += $2; n++ } END { printf "%.0f", n ? s / n : 0 }'; }

echo "== local: 1 process, batch $batch on $device"
spec local
"$cli" train --local "$work/local.json" --device "$device" | tee "$work/local.log"

echo "== cluster: seed + 2 workers sharing $device, batch $((batch / 2)) each"
spec cluster
common=(--Node:Host=127.0.0.1 --Node:Seeds=127.0.0.1:$port)
"$node" --Node:Roles=seed --Node:Port=$port --Node:StateDir="$work/state" "${common[@]}" >"$work/seed.log" 2>&1 &
pids+=($!)
for w in 1 2; do
  "$node" --Node:Roles=worker --Node:Port=0 --Node:Devices="$device" "${common[@]}" >"$work/worker$w.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 90); do
  "$cli" status --cluster 127.0.0.1:$port --connect-timeout 5 2>/dev/null | grep -q "workers 2" && break
  sleep 2
done
"$cli" submit "$work/cluster.json" --cluster 127.0.0.1:$port --wait | tee "$work/cluster.log" \
  || { tail -n 30 "$work"/seed.log "$work"/worker*.log; exit 1; }

echo "RESULT local B=$batch img_per_s=$(mean <"$work/local.log")"
echo "RESULT cluster workers=2 B=$((batch / 2))x2 img_per_s=$(mean <"$work/cluster.log")"
