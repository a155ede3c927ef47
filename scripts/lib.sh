# Shared by the scripts: build a project (Release) when its build is missing or older than the sources.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=${GANCLUSTER_CONFIGURATION:-Release}

# ensure_built NAME [ASSEMBLY] -> prints the path of src/NAME/bin/$config/net10.0/ASSEMBLY.dll (ASSEMBLY: NAME)
ensure_built() {
  local name=$1
  local dll=$root/src/$name/bin/$config/net10.0/${2:-$name}.dll
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
      \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' -o -name '*.json' -o -name '*.html' -o -name '*.js' -o -name '*.css' \) \
      -not -path '*/bin/*' -not -path '*/obj/*' \
      -newer "$1" -print -quit)" ]
}

# For the bench scripts: a throwaway cluster with credentials of its own (mutual TLS, as in production) under DIR,
# whose nodes (started with bench_start) are all stopped when the script exits.
bench_cluster() {  # bench_cluster DIR
  export GANCLUSTER_CREDENTIALS=$1/credentials
  "$root/scripts/gancluster" certs create --out "$GANCLUSTER_CREDENTIALS" >/dev/null
  pids=()
  trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
}

# bench_start ROLE ARGS...: scripts/start-ROLE.sh ARGS; its pid joins $pids, its log is in $log.
# Not in $(...): the pid must reach the calling shell's list so that the trap stops every node.
bench_start() {
  local out; out=$("$root/scripts/start-$1.sh" "${@:2}")
  pids+=("$(grep -o 'pid [0-9]*' <<<"$out" | cut -d' ' -f2)")
  log=$(grep -o 'logs: [^ ]*' <<<"$out" | cut -d' ' -f2)
}
