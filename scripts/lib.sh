# Shared by the scripts: build a project (Release) when its build is missing or older than the sources.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=${GANCLUSTER_CONFIGURATION:-Release}

# ensure_built NAME -> prints the path of src/NAME/bin/$config/net10.0/NAME.dll
ensure_built() {
  local name=$1
  local dll=$root/src/$name/bin/$config/net10.0/$name.dll
  # An incremental build leaves an unchanged dll's timestamp alone: compare the sources with a stamp instead.
  local stamp=$root/src/$name/bin/$config/.gancluster-built
  if [ ! -f "$dll" ] || stale "$stamp"; then
    # Several nodes may start at once: one builds, the others wait for it.
    exec 9>"$root/.build.lock"
    flock 9
    if [ ! -f "$dll" ] || stale "$stamp"; then
      echo "gancluster: building $name ($config) ..." >&2
      local out
      if ! out=$(dotnet build "$root/src/$name/$name.csproj" -c "$config" -nologo -v q 2>&1); then
        echo "$out" >&2
        echo "gancluster: the build of $name failed" >&2
        exit 1
      fi
      touch "$stamp"
    fi
    flock -u 9
  fi
  echo "$dll"
}

stale() {
  [ ! -f "$1" ] && return 0
  [ -n "$(find "$root/src" "$root/cluster-config" "$root/Directory.Build.props" "$root/Directory.Packages.props" \
      \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' -o -name '*.json' \) -not -path '*/bin/*' -not -path '*/obj/*' \
      -newer "$1" -print -quit)" ]
}
