#!/usr/bin/env bash
# Starts a worker node (one worker actor per device) in the background; --foreground for containers.
# Example: scripts/start-worker.sh --seeds 127.0.0.1:4053 --devices cpu
exec "$(dirname "${BASH_SOURCE[0]}")/start-node.sh" worker "$@"
