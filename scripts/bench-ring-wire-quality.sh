#!/usr/bin/env bash
# What the bf16 wire does to a cluster run's result: one seed and 2 CPU workers (--cpu-threads 1) train the ring8 spec
# (the built-in default: MLP GAN, batch 256, 6000 iterations, seed 3) with training.wirePrecision fp32, then bf16, then
# again with each further seed given, on the same cluster. Prints, per run: the final samples' mode quality (the
# coordinator's "final samples: modes …", from the last published sample CSV), the last metrics.csv row's losses and
# D outputs, and the samples/s after the first logging window.
# Usage: scripts/bench-ring-wire-quality.sh [SEED ...]   (default: 3)   GANCLUSTER_BENCH_ITERATIONS (default 6000)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(3)
it=${GANCLUSTER_BENCH_ITERATIONS:-6000}; every=$((it / 6)); B=256
port=${GANCLUSTER_BENCH_PORT:-4561}
d=$(mktemp -d /tmp/gancluster-wire.XXXXXX)
bench_cluster "$d"
runs=$d/runs; mkdir -p "$runs"
bench_start seed --host 127.0.0.1 --log-dir "$d/logs" --port "$port" --state-dir "$d/state" "--Node:RunsRoot=$runs"
bench_start worker --host 127.0.0.1 --log-dir "$d/logs" --seeds "127.0.0.1:$port" --cpu-threads 1
bench_start worker --host 127.0.0.1 --log-dir "$d/logs" --seeds "127.0.0.1:$port" --cpu-threads 1
until "$root/scripts/gancluster" status --cluster "127.0.0.1:$port" 2>/dev/null | grep -q "workers 2"; do sleep 1; done
rate() { awk -F, -v b="$2" 'NR == 2 { i0 = $1; t0 = $7 } NR > 2 { i = $1; t = $7 } END { printf "%.0f", (i - i0) * b / (t - t0) }' "$1"; }
echo "| seed | wire | iterations | final samples | loss_d | loss_g | D(x) | D(G(z)) | samples/s |"
echo "|---|---|---|---|---|---|---|---|---|"
for seed in "${seeds[@]}"; do
  for wire in fp32 bf16; do
    name=ring8-$wire-s$seed
    printf '{"name":"%s","dataset":{"kind":"ring8","size":100000},"model":{"kind":"mlp","nz":8,"ngf":128,"ndf":128},"training":{"iterations":%d,"batchSize":%d,"lrD":0.001,"lrG":0.001,"beta1":0.5,"lrDecay":"linear","seed":%d,"logEvery":%d,"wirePrecision":"%s"},"checkpoint":{"every":%d,"keep":1},"output":"%s"}\n' \
      "$name" "$it" "$B" "$seed" "$every" "$wire" "$it" "$name" >"$d/$name.json"
    "$root/scripts/gancluster" submit "$d/$name.json" --cluster "127.0.0.1:$port" --wait >"$d/$name.txt" 2>&1 || { echo "| $seed | $wire | failed: $(tail -1 "$d/$name.txt") |"; continue; }
    quality=$(grep -o 'final samples: [^;]*' "$d/$name.txt" | tail -1 | sed 's/final samples: //')
    last=$(tail -1 "$runs/$name/metrics.csv")
    IFS=, read -r i ld lg dx dgz _ <<<"$last"
    echo "| $seed | $wire | $i | ${quality:-?} | $ld | $lg | $dx | $dgz | $(rate "$runs/$name/metrics.csv" "$B") |"
  done
done
# The workers say which wire each run formed its ring with.
grep -ho "ring [^;]*gradients as [a-z0-9]*" "$d"/logs/worker-*.log | sort | uniq -c
echo "logs and runs: $d"
