#!/usr/bin/env bash
# Builds the whole .gpu/ folder for the lent GPU machine with one command, from this checkout's sources:
#   app.tar.xz, on-device.sh, pytorch_dcgan_ref.py  (../shared/gpu/bundle.sh: the CLI, self-contained, without libtorch)
#   gpu-check.sh, mnist-sample/                      (the checks and their data)
#   node-diff.tar.xz                                 (the node: only the files in which its publish differs from the CLI's)
# Usage, from anywhere in the checkout:  scripts/gpu-bundle.sh
# Then one device run, carry [".gpu"]:
#   bash .gpu/on-device.sh 'bash gpu-check.sh --cli $APP --node-diff node-diff.tar.xz --data mnist-sample --out $OUT/gpu-check'
# The apps are published from a copy of src/ (bin/ and obj/ left out), so a build running in this checkout at the
# same time is not disturbed. Fails when .gpu/ reaches 60 MiB (a device run carries at most 64 MiB).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${GANCLUSTER_SHARED:-$root/../shared}
data=${GPU_CHECK_DATA:-$shared/data/mnist-sample}
[ -x "$shared/gpu/bundle.sh" ] || { echo "gpu-bundle: no $shared/gpu/bundle.sh (set GANCLUSTER_SHARED)" >&2; exit 2; }
[ -d "$data" ] || { echo "gpu-bundle: no MNIST sample at $data (set GPU_CHECK_DATA)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"
(tar --exclude=bin --exclude=obj -cf - src cluster-config Directory.Build.props Directory.Packages.props) | tar -xf - -C "$tmp"
mkdir -p "$tmp/extras"
cp scripts/gpu-check.sh "$tmp/extras/" && cp -r "$data" "$tmp/extras/mnist-sample" && chmod -R u+w "$tmp/extras"

# 1. The CLI, on-device.sh, the PyTorch reference and the extras. A fresh .gpu/ (the data's read-only modes are dropped).
chmod -R u+w .gpu 2>/dev/null || true
rm -rf .gpu
"$shared/gpu/bundle.sh" "$tmp/src/GanCluster.Cli/GanCluster.Cli.csproj" "$tmp/extras/gpu-check.sh" "$tmp/extras/mnist-sample"

# 2. The node: its self-contained publish minus libtorch, as bundle.sh does for the CLI, packed as the files that differ
#    from the CLI's. On the device gpu-check.sh --node-diff does: cp -r "$APP" NODE && tar -xJf node-diff.tar.xz -C NODE
tar -xJf .gpu/app.tar.xz -C "$tmp"
dotnet publish "$tmp/src/GanCluster.Node/GanCluster.Node.csproj" -c Release -r linux-x64 --self-contained true \
  -o "$tmp/node" -p:DebugType=none >"$tmp/publish-node.log" 2>&1 || { tail -30 "$tmp/publish-node.log" >&2; exit 1; }
(
  cd "$tmp/node"
  find . \( -name 'libtorch*.so*' -o -name 'libc10*.so*' -o -name 'libgomp*.so*' -o -name 'libshm*.so*' \
    -o -name 'libbackend_with_compiler.so' -o -name 'libaoti_custom_ops.so' -o -name 'libjitbackend_test.so' \
    -o -name 'libnnapi_backend.so' \) -delete
  rm -rf cpu cuda-*
  find . -type f | while read -r f; do cmp -s "$f" "$tmp/app/$f" || echo "$f"; done >"$tmp/differ.txt"
  tar -cJf "$root/.gpu/node-diff.tar.xz" -T "$tmp/differ.txt"
)
echo "node: $(wc -l <"$tmp/differ.txt") files differ from the CLI's publish -> .gpu/node-diff.tar.xz ($(du -h .gpu/node-diff.tar.xz | cut -f1))"

size=$(du -sm .gpu | cut -f1)
ls -l .gpu
if [ "$size" -ge 60 ]; then echo "gpu-bundle: .gpu is $size MiB, over the 60 MiB limit" >&2; exit 1; fi
echo "gpu-bundle: .gpu is $size MiB. Device run (carry [\".gpu\"]):"
echo "  bash .gpu/on-device.sh 'bash gpu-check.sh --cli \$APP --node-diff node-diff.tar.xz --data mnist-sample --out \$OUT/gpu-check'"
