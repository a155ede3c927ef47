#!/usr/bin/env bash
# Upload throughput of a save: a seed and one CPU worker train an MLP with 1024 hidden units (a 50 MB checkpoint with
# its Adam moments), saving at iterations 20, 40 and 60; prints, per save, the time from rank 0's snapshot to the seed
# having published it (upload, manifest check, rename). The last save runs with training finished, the others beside it.
# Usage: scripts/bench-upload.sh [port (4701)]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
port=${1:-4701}
d=$(mktemp -d /tmp/upload-bench.XXXXXX)
bench_cluster "$d"
bench_start seed --port $port --log-dir $d --state-dir $d/state --Node:RunsRoot=$d; slog=$log
bench_start worker --seeds 127.0.0.1:$port --cpu-threads 2 --log-dir $d; wlog=$log
until $root/scripts/gancluster status --cluster 127.0.0.1:$port 2>/dev/null | grep -q "workers 1"; do sleep 1; done
cat > $d/spec.json <<J
{"name":"up","dataset":{"kind":"ring8","size":4000},"model":{"kind":"mlp","nz":4,"ngf":1024,"ndf":1024},
 "training":{"iterations":60,"batchSize":32,"logEvery":20,"seed":3},"checkpoint":{"every":20,"keep":3},"output":"out"}
J
$root/scripts/gancluster submit $d/spec.json --cluster 127.0.0.1:$port --wait > $d/client.txt 2>&1 || { cat $d/client.txt; exit 1; }
size=$(du -sb $d/out/checkpoints/iter-00000020 | cut -f1)
python3 - "$wlog" "$slog" "$size" <<'P'
import re,sys,datetime
wl,sl,size=open(sys.argv[1]).read(),open(sys.argv[2]).read(),int(sys.argv[3])
t=lambda s: datetime.datetime.strptime(s,"%m/%d/%Y %H:%M:%S.%f")
snap={int(m.group(2)):t(m.group(1)) for m in re.finditer(r"\]\[(\d\d/\d\d/\d{4} [\d:.]+)Z\].*outputs of iteration (\d+) snapshotted",wl)}
done={int(m.group(2)):t(m.group(1)) for m in re.finditer(r"\]\[(\d\d/\d\d/\d{4} [\d:.]+)Z\].*outputs of iteration (\d+) written",sl)}
for it in sorted(snap):
    if it in done:
        s=(done[it]-snap[it]).total_seconds(); print(f"iteration {it}: {size/1e6:.1f} MB checkpoint + samples uploaded and published in {s:.2f} s = {size/1e6/s:.1f} MB/s")
P
