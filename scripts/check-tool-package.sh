#!/usr/bin/env bash
# Packs the CLI as a .NET tool and installs it the way the README says (dotnet tool install --global --add-source),
# into a throwaway home, then runs it: its help names `gancluster` and a short local run completes.
# Usage: scripts/check-tool-package.sh            (CI runs it after the tests; ~3 min on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check-tool-package: FAIL: $*" >&2; exit 1; }

echo "check-tool-package: dotnet pack src/GanCluster.Cli -> $tmp/feed"
dotnet pack "$root/src/GanCluster.Cli/GanCluster.Cli.csproj" -c Release -nologo -o "$tmp/feed" >"$tmp/pack.log" 2>&1 \
  || { tail -30 "$tmp/pack.log" >&2; fail "dotnet pack failed"; }
pkg=$(ls "$tmp"/feed/gancluster.*.nupkg) || fail "no gancluster.*.nupkg in $tmp/feed"
echo "check-tool-package: $(basename "$pkg") ($(du -m "$pkg" | cut -f1) MiB)"

# A global install into a home of its own, so that the machine's tools are untouched.
export DOTNET_CLI_HOME=$tmp/home
dotnet tool install --global gancluster --add-source "$tmp/feed" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log" >&2; fail "dotnet tool install --global gancluster failed"; }
tool=$DOTNET_CLI_HOME/.dotnet/tools/gancluster
[ -x "$tool" ] || fail "no $tool after the install"

"$tool" --help >"$tmp/help.txt" 2>&1 || fail "gancluster --help exited $?"
grep -q '^  gancluster \[command\]' "$tmp/help.txt" || { cat "$tmp/help.txt" >&2; fail "the help does not name the command gancluster"; }
mkdir "$tmp/work"
(cd "$tmp/work" && "$tool" train --local --iterations 40 --output run) >"$tmp/train.log" 2>&1 \
  || { tail -20 "$tmp/train.log" >&2; fail "gancluster train --local exited non-zero"; }
grep -q 'final parameter checksum' "$tmp/train.log" || { tail -20 "$tmp/train.log" >&2; fail "the run did not finish"; }
ls "$tmp"/work/run/checkpoints/iter-* >/dev/null 2>&1 || fail "the run wrote no checkpoint"
echo "check-tool-package: PASS (installed as a global tool; help names gancluster; train --local wrote $(ls -d "$tmp"/work/run/checkpoints/iter-* | tail -1 | xargs basename))"
