#!/usr/bin/env bash
# Common part of start-seed.sh and start-worker.sh. Not meant to be called directly.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
role=$1; shift
host=127.0.0.1; port=""; seeds=""; statedir=0; devices=cpu; logdir="$root/logs"; foreground=0; restart=0; extra=(); join_timeout=120
credentials=${GANCLUSTER_CREDENTIALS:-$root/credentials}; insecure=0
usage() {
  cat >&2 <<TXT
usage: scripts/start-$role.sh [--host IP] [--port N] [--seeds host:port[,host:port]] [--devices cpu|cuda:0,cuda:1|all]
                             [--torch-lib-dir DIR] [--cpu-threads N] [--data-port N|FIRST-LAST] [--log-dir DIR] [--state-dir DIR]
                             [--credentials DIR | --insecure] [--join-timeout S] [--foreground] [--restart-on-down]
                             [--Node:Option=value ...] [--Logging:Setting=value ...]
  --seeds:       where the seeds listen; not needed with --Node:Discovery=config|kubernetes --Node:ManagementPort=N
                 (Cluster Bootstrap finds them: cluster-config/README.md)
  --credentials: the cluster's credentials folder (scripts/gancluster certs create); default \$GANCLUSTER_CREDENTIALS,
                 else credentials/ in the repository
  --insecure:    no TLS and no authentication (anyone who can reach the ports can use the cluster); for a machine of one's own
  --data-port:   the workers' gradient ring port (one device) or range (one port per device, in --devices order);
                 default any free port. For firewalls: open these and --port.
  --join-timeout: seconds to wait until the node has joined the cluster (120); 0 returns once it listens. When it has
                 not joined by then, the script says what the log shows and exits 1, leaving the node retrying.
  --restart-on-down: start the node again when the cluster downs it (it exits with code 3); the pid printed is then the
                     supervisor's, which passes SIGTERM on (a graceful leave) and stops with the node
TXT
  exit 2
}
while [ $# -gt 0 ]; do
  case $1 in
    --host) host=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --seeds|--seed) seeds=$2; shift 2 ;;
    --devices) devices=$2; shift 2 ;;
    --torch-lib-dir) extra+=("--Node:TorchLibDir=$2"); shift 2 ;;
    --cpu-threads) extra+=("--Node:CpuThreads=$2"); shift 2 ;;
    --data-port) extra+=("--Node:DataPorts=$2"); shift 2 ;;
    --join-timeout) join_timeout=$2; shift 2 ;;
    --log-dir) logdir=$2; shift 2 ;;
    --state-dir) extra+=("--Node:StateDir=$2"); statedir=1; shift 2 ;;
    --credentials) credentials=$2; shift 2 ;;
    --insecure) insecure=1; shift ;;
    --foreground) foreground=1; shift ;;
    --restart-on-down) restart=1; shift ;;
    --Node:*|--Logging:*) extra+=("$1"); shift ;;   # cluster-config/README.md: node options, log levels and format
    -h|--help) usage ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
done
[[ $join_timeout =~ ^[0-9]+$ ]] || { echo "start-$role.sh: --join-timeout must be a whole number of seconds (got $join_timeout)" >&2; exit 2; }
if [ "$role" = seed ]; then
  port=${port:-4053}; seeds=${seeds:-$host:$port}; roles=seed
  # The run being driven and the members to rejoin after a restart (a shared volume when several seeds can host it).
  [ $statedir = 1 ] || extra+=("--Node:StateDir=$root/state")
else
  port=${port:-0}; roles=worker
  # With --Node:Discovery=config|kubernetes the node finds the seeds through Cluster Bootstrap instead.
  bootstrap=0; for a in ${extra[@]+"${extra[@]}"}; do [[ $a =~ ^--Node:Discovery=(config|kubernetes)$ ]] && bootstrap=1; done
  [ -n "$seeds" ] || [ $bootstrap = 1 ] || { echo "start-worker.sh: --seeds host:port is required (where the seed listens), or --Node:Discovery=config|kubernetes" >&2; exit 2; }
fi
if [ $insecure = 1 ]; then
  extra+=("--Node:Insecure=true"); scheme=akka.tcp
elif [ -d "$credentials" ]; then
  extra+=("--Node:Credentials=$(cd "$credentials" && pwd)"); scheme=akka.ssl.tcp
else
  echo "start-$role.sh: no cluster credentials in $credentials. Create them once with: scripts/gancluster certs create" >&2
  echo "  (and give every node and client the same folder: --credentials DIR), or pass --insecure to run without TLS and authentication" >&2
  exit 2
fi
dll=$(ensure_built GanCluster.Node)
args=("--Node:Roles=$roles" "--Node:Host=$host" "--Node:Port=$port" "--Node:Seeds=$seeds" "--Node:Devices=$devices" ${extra[@]+"${extra[@]}"})
if [ $foreground = 1 ]; then
  exec dotnet "$dll" "${args[@]}"
fi
mkdir -p "$logdir"
log="$logdir/$role-$host-$port-$$.log"
ready="$log.ready"; rm -f "$ready"
args+=("--Node:ReadyFile=$ready")
if [ $restart = 1 ]; then
  # A downed node may not come back as the same member: it exits with code 3, and this loop starts it afresh.
  nohup bash -c '
    child=0
    trap "kill -TERM \$child 2>/dev/null; wait \$child; exit \$?" TERM INT
    while :; do
      "$@" & child=$!
      wait $child; rc=$?
      [ $rc -eq 3 ] || exit $rc
      echo "gancluster: the node was downed by the cluster; starting it again in 2 s"
      sleep 2
    done' supervise dotnet "$dll" "${args[@]}" >"$log" 2>&1 </dev/null &
else
  nohup dotnet "$dll" "${args[@]}" >"$log" 2>&1 </dev/null &
fi
pid=$!
echo "$pid" >"$log.pid"
# Wait until it has joined the cluster (or only listens, with --join-timeout 0), or exits (a port in use, a bad
# setting): a node that cannot start, or is not let in, must not look started.
# The node writes how far it got to its ready file (Node:ReadyFile), whatever the log's levels and format.
want=joined
[ "$join_timeout" = 0 ] && want=listening
deadline=$((SECONDS + join_timeout)); listen_deadline=$((SECONDS + (join_timeout > 60 ? join_timeout : 60)))
until grep -q "^$want" "$ready" 2>/dev/null || { [ $want = listening ] && grep -q "^joined" "$ready" 2>/dev/null; }; do
  if ! kill -0 "$pid" 2>/dev/null; then
    rc=0; wait "$pid" || rc=$?
    echo "$role failed to start (exit $rc; pid $pid, logs: $log):" >&2
    grep -E "^error|^  - " "$log" >&2 || tail -n 20 "$log" >&2
    exit "$rc"
  fi
  # A node that printed an error is on its way out (it prints them as it exits): report it as a failed start.
  if grep -q "^error" "$log" 2>/dev/null && [ $SECONDS -ge $deadline ] && [ $SECONDS -lt $((deadline + 30)) ]; then sleep 0.1; continue; fi
  listening=0; [ -s "$ready" ] && listening=1
  # (With --join-timeout 0, a ready file written since the check above is a start: the loop ends on its next turn.)
  if [[ ( $listening = 1 && $want = joined && $SECONDS -ge $deadline ) || ( $listening = 0 && $SECONDS -ge $listen_deadline ) ]]; then
    if [ $listening = 1 ]; then
      echo "$role has not joined the cluster after $join_timeout s (seeds $seeds). What its log says:" >&2
      # The likely reasons: the seeds unreachable, refused (TLS: other credentials, or --insecure on one side only), or down.
      grep -iE "warn|error|refus|fail|not this cluster|handshake|unreachable" "$log" | tail -n 8 >&2 || true
      grep -qiE "warn|error|refus|fail|handshake|unreachable" "$log" || tail -n 8 "$log" >&2
      echo "check that a seed runs at $seeds and that this node has the cluster's credentials (the same folder as the seed's, or --insecure on both)" >&2
      echo "the node is still running and retrying: pid $pid, logs: $log   (stop: kill $pid)" >&2
    else
      echo "$role did not start listening in time; last lines of $log:" >&2
      tail -n 20 "$log" >&2
    fi
    exit 1
  fi
  sleep 0.1
done
found="seeds $seeds"; for a in ${extra[@]+"${extra[@]}"}; do [[ $a =~ ^--Node:Discovery=(config|kubernetes)$ ]] && found="bootstrap by ${a#--Node:Discovery=} discovery"; done
echo "$role started: pid $pid, $scheme://gancluster@$host:$port$([ "$port" = 0 ] && echo " (port 0: any free port)"), $found$([ "$join_timeout" = 0 ] || echo "; joined")"
echo "logs: $log   (stop: kill $pid)"
