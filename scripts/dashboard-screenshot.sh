#!/usr/bin/env bash
# Makes the README's dashboard picture from a real run: DashboardTests.Readme_picture_of_an_mnist_run starts a seed
# with the dashboard (HTTPS, the test credentials) and two CPU workers on 127.0.0.1, submits a small MNIST DCGAN
# (examples/mnist-dcgan-watch.json's settings), logs in through the page in headless Chromium (DevTools protocol) and
# takes a 1280x800 picture once the run is past --after iterations with samples shown. Needs chromium and the MNIST files.
# Usage: scripts/dashboard-screenshot.sh [--data DIR (../shared/data/mnist-sample)] [--after N (700)] [--out PNG (docs/images/dashboard.png)]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
data=$root/../shared/data/mnist-sample; after=700; out=$root/docs/images/dashboard.png
while [ $# -gt 0 ]; do
  case $1 in
    --data) data=$2; shift 2 ;;
    --after) after=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,6p' "$0" >&2; exit 2 ;;
  esac
done
[ -f "$data/images-idx3-ubyte.gz" ] || { echo "no MNIST files in $data (images-idx3-ubyte.gz, labels-idx1-ubyte.gz): give --data DIR" >&2; exit 2; }
command -v chromium >/dev/null || { echo "chromium is needed: apt-get install -y chromium" >&2; exit 2; }
log=$(mktemp /tmp/dashboard-screenshot.XXXXXX.log)
if ! GANCLUSTER_DASHBOARD_PICTURE=$(realpath -m "$out") GANCLUSTER_DASHBOARD_MNIST=$(cd "$data" && pwd) GANCLUSTER_DASHBOARD_AFTER=$after \
    dotnet test "$root/tests/GanCluster.Cluster.Tests" -c "$config" --filter "FullyQualifiedName~DashboardTests.Readme_picture" \
    --logger "console;verbosity=normal" >"$log" 2>&1; then
  tail -n 60 "$log" >&2
  echo "the picture was not made (whole log: $log)" >&2
  exit 1
fi
grep -m1 -o "wrote .*png" "$log"
rm -f "$log"
