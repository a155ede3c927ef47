#!/usr/bin/env bash
# How long a seed failover takes: 2 seeds + 2 CPU workers on 127.0.0.1, a ring8 run followed by `submit --wait`
# through the first seed, which is killed with SIGKILL right after the first checkpoint. Prints the seconds until the
# coordinator resumes the run on the second seed, and the client's last line.
#   scripts/bench-failover.sh [stable-after seconds (Node:DowningStableAfterSeconds, default 20)] [first port (4101)]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
S=${1:-20}; P1=${2:-4101}; P2=$((P1 + 1)); seeds=127.0.0.1:$P1,127.0.0.1:$P2
d=$(mktemp -d /tmp/gancluster-failover.XXXXXX)
opt=--Node:DowningStableAfterSeconds=$S
bench_cluster "$d"
start() { bench_start "$1" --host 127.0.0.1 --seeds $seeds --log-dir "$d" "${@:2}" "$opt"; }
start seed --port $P1 --state-dir "$d/state" --Node:RunsRoot="$d"
sleep 8                                          # the first seed forms the cluster and hosts the coordinator
start seed --port $P2 --state-dir "$d/state" --Node:RunsRoot="$d"; log2=$log
start worker --cpu-threads 1
start worker --cpu-threads 1
until "$root/scripts/gancluster" status --cluster 127.0.0.1:$P2 2>/dev/null | grep -q "workers 2"; do sleep 1; done
cat >"$d/spec.json" <<J
{"name":"failover","dataset":{"kind":"ring8","size":20000},"model":{"kind":"mlp","nz":4,"ngf":32,"ndf":32},
 "training":{"iterations":3000,"batchSize":64,"logEvery":100},"checkpoint":{"every":400,"keep":3},"output":"out"}
J
"$root/scripts/gancluster" submit "$d/spec.json" --cluster 127.0.0.1:$P1 --wait >"$d/client.txt" 2>&1 &
client=$!
until [ -d "$d/out/checkpoints/iter-00000400" ]; do sleep 0.2; done
t0=$(date +%s.%N); kill -9 "${pids[0]}"
until grep -q "resuming from" "$log2"; do sleep 0.1; done
t1=$(date +%s.%N)
echo "stable-after $S s: the coordinator resumed the run on the second seed $(echo "$t1 - $t0" | bc) s after the kill"
wait $client || true
tail -1 "$d/client.txt"
echo "logs: $d"
