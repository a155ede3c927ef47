#!/usr/bin/env bash
# What the cluster's security costs a whole run: a seed and 2 CPU workers on 127.0.0.1 train the same small ring8
# run (2000 iterations, every update a control round trip through the seed plus a ring all-reduce) with
#   insecure  (Node:Insecure: plain TCP, ring handshake without a secret),
#   tls       (mutual TLS on Akka.Remote, authenticated ring: the default with credentials),
#   tls+enc   (the same, and Node:RingEncryption=true),
# alternating for ROUNDS rounds, and prints one table row per run: the run's training time from its metrics.csv.
# Usage: scripts/bench-tls.sh [rounds (2)] [first port (4301)]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds=${1:-2}; port=${2:-4301}
d=$(mktemp -d /tmp/gancluster-bench-tls.XXXXXX)
bench_cluster "$d"
start() { bench_start "$1" --host 127.0.0.1 --log-dir "$d/logs" "${@:2}"; }
cat >"$d/spec.json" <<J
{"name":"bench-tls","dataset":{"kind":"ring8","size":20000},"model":{"kind":"mlp","nz":4,"ngf":64,"ndf":64},
 "training":{"iterations":2000,"batchSize":128,"logEvery":500,"seed":7},"checkpoint":{"every":2000,"keep":1},"output":"out"}
J
echo "| round | mode | iterations | training time (s) | iterations/s | final checksum |"
echo "|---|---|---|---|---|---|"
for r in $(seq "$rounds"); do
  for mode in insecure tls tls+enc; do
    case $mode in
      insecure) flags=(--insecure); client=(--insecure) ;;
      tls) flags=(); client=() ;;
      tls+enc) flags=(--Node:RingEncryption=true); client=() ;;
    esac
    runs=$d/runs-$r-$mode; mkdir -p "$runs"; pids=()
    start seed --port $port --state-dir "$d/state-$r-$mode" "--Node:RunsRoot=$runs" ${flags[@]+"${flags[@]}"}
    start worker --seeds 127.0.0.1:$port --cpu-threads 1 ${flags[@]+"${flags[@]}"}
    start worker --seeds 127.0.0.1:$port --cpu-threads 1 ${flags[@]+"${flags[@]}"}
    until "$root/scripts/gancluster" status --cluster 127.0.0.1:$port ${client[@]+"${client[@]}"} 2>/dev/null | grep -q "workers 2"; do sleep 1; done
    "$root/scripts/gancluster" submit "$d/spec.json" --cluster 127.0.0.1:$port --wait ${client[@]+"${client[@]}"} >"$d/client-$r-$mode.txt" 2>&1
    # elapsed_s of each logging window, summed: training time without the start-up (data, models, ring).
    secs=$(awk -F, 'NR > 1 { s += $7 } END { printf "%.1f", s }' "$runs/out/metrics.csv")
    sum=$(grep -o 'checksum [0-9a-f]*' "$d/client-$r-$mode.txt" | tail -1 | cut -c10-25)
    echo "| $r | $mode | 2000 | $secs | $(echo "2000 / $secs" | bc) | $sum… |"
    kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
    port=$((port + 1))
  done
done
echo "logs: $d"
