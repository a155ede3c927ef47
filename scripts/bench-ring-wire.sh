#!/usr/bin/env bash
# fp32 against bf16 on the ring's wire, side by side in one run: 2 worker processes each busy 1 ms before every
# weighted mean (as workers are), for the gradient sizes of scripts/bench-ring-busy.sh and docs/benchmarks.md (ring8's
# generator 137 KB, 2 MB, 4 MB) and a DCGAN-64-sized buffer (G 3,576,704 + D 2,765,568 floats = 25.37 MB).
# Usage: scripts/bench-ring-wire.sh [--workers 2,3] [--security plain]   (extra flags go to the bench, after the defaults)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dotnet build "$root/src/GanCluster.DataPlane.Bench" -c Release -v q -nologo >/dev/null
bench=$root/src/GanCluster.DataPlane.Bench/bin/Release/net10.0/GanCluster.DataPlane.Bench.dll
rows=()
# Fewer iterations for the big buffer: each one moves 25 MB per process.
for size in "0.137 600" "2 300" "4 200" "25.37 60"; do
  read -r mb iters <<<"$size"
  out=$(dotnet "$bench" --workers 2 --mb "$mb" --iters "$iters" --warmup 10 --busy-ms 1 --security plain,encrypt --wire fp32,bf16 "$@")
  while IFS= read -r row; do rows+=("| $mb $row"); done < <(grep '^| ring all-reduce' <<<"$out")
done
echo "| S (MB) | what | workers | time (ms, median) | S/t (MB/s) | bus bw (MB/s) | sent/process (B) | received/process (B) |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
# bf16 time / fp32 time for the same size, security and worker count.
printf '%s\n' "${rows[@]}" | awk -F'|' '
  { size = $2; what = $3; n = $4; t = $5; gsub(/ /, "", size); gsub(/ /, "", n)
    wire = what ~ /bf16 wire/ ? "bf16" : "fp32"; sec = what; sub(/, bf16 wire/, "", sec); sub(/^ *ring all-reduce, /, "", sec); sub(/ *$/, "", sec)
    key = size "|" sec "|" n; time[key, wire] = t + 0; if (!(key in seen)) { seen[key] = 1; order[++k] = key } }
  END { for (i = 1; i <= k; i++) { split(order[i], p, "|"); if ((order[i], "bf16") in time && (order[i], "fp32") in time)
          printf "S = %s MB, %s, %s workers: bf16 %.2f ms vs fp32 %.2f ms = %.2f x\n", p[1], p[2], p[3],
            time[order[i], "bf16"], time[order[i], "fp32"], time[order[i], "bf16"] / time[order[i], "fp32"] } }'
