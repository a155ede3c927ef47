#!/usr/bin/env bash
# The ring between busy ranks, as workers use it: 2 processes each compute (spin) 1 ms, then average a gradient
# buffer the size of ring8's generator (137 KB, chunks of 69 KB); the same run with steps of up to one block sent from
# the calling thread (the default) and with every step handed to the ring's sender thread (--inline-kb 0), one after
# the other.
# Usage: scripts/bench-ring-busy.sh [--busy-ms 1] [--mb 0.137] [--iters 600]   (extra flags go to the bench)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dotnet build "$root/src/GanCluster.DataPlane.Bench" -c Release -v q -nologo >/dev/null
bench=$root/src/GanCluster.DataPlane.Bench/bin/Release/net10.0/GanCluster.DataPlane.Bench.dll
args=(--workers 2 --mb 0.137 --iters 600 --warmup 50 --busy-ms 1 --security plain "$@")
echo "| steps from the calling thread up to | what | workers | time (ms, median) | S/t (MB/s) | bus bw (MB/s) | sent/process (B) | received/process (B) |"
echo "|---|---|---|---|---|---|---|---|"
for kb in 1024 0; do
  dotnet "$bench" "${args[@]}" --inline-kb "$kb" | grep '^| ring all-reduce' | sed "s/^/| $kb KiB /"
done
