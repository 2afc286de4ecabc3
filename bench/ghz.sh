#!/usr/bin/env bash
# Runs ghz against a running gateway (default 127.0.0.1:50051) with bench/ghz.json.
# Usage: bench/ghz.sh [HOST:PORT] [extra ghz flags...]   e.g. bench/ghz.sh 127.0.0.1:50051 -c 1 -n 5000
set -euo pipefail
cd "$(dirname "$0")"
host="${1:-127.0.0.1:50051}"
shift || true
exec ghz --config ghz.json "$@" "$host"
