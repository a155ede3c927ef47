#!/usr/bin/env bash
# Starts a seed node (coordinator singleton, outputs, client entry point) in the background; --foreground for containers.
# Example: scripts/start-seed.sh --host 127.0.0.1 --port 4053
exec "$(dirname "${BASH_SOURCE[0]}")/start-node.sh" seed "$@"
