#!/usr/bin/env bash
# After ../shared/gpu/bundle.sh has packed the CLI into .gpu/app.tar.xz: adds the node program as .gpu/node-diff.tar.xz,
# only the files in which its self-contained publish differs from the CLI's (about 1.5 MB instead of 30), so that both
# fit in what a device run carries. On the device:  cp -r "$APP" /tmp/node && tar -xJf node-diff.tar.xz -C /tmp/node
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -f "$root/.gpu/app.tar.xz" ] || { echo "run ../shared/gpu/bundle.sh src/GanCluster.Cli/GanCluster.Cli.csproj first" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xJf "$root/.gpu/app.tar.xz" -C "$tmp"
dotnet publish "$root/src/GanCluster.Node/GanCluster.Node.csproj" -c Release -r linux-x64 --self-contained true \
  -o "$tmp/node" -p:DebugType=none >"$tmp/publish.log" 2>&1 || { tail -30 "$tmp/publish.log"; exit 1; }
cd "$tmp/node"
# libtorch comes from the device's PyTorch, as for the CLI.
find . \( -name 'libtorch*.so*' -o -name 'libc10*.so*' -o -name 'libgomp*.so*' -o -name 'libshm*.so*' \
  -o -name 'libbackend_with_compiler.so' -o -name 'libaoti_custom_ops.so' -o -name 'libjitbackend_test.so' \
  -o -name 'libnnapi_backend.so' \) -delete
rm -rf cpu cuda-*
find . -type f | while read -r f; do cmp -s "$f" "$tmp/app/$f" || echo "$f"; done >"$tmp/differ.txt"
tar -cJf "$root/.gpu/node-diff.tar.xz" -T "$tmp/differ.txt"
echo "node: $(wc -l <"$tmp/differ.txt") files differ from the CLI's publish -> .gpu/node-diff.tar.xz ($(du -h "$root/.gpu/node-diff.tar.xz" | cut -f1))"
