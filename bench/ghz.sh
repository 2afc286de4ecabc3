#!/usr/bin/env bash
# Runs ghz against a running gateway (default 127.0.0.1:50051) with bench/ghz.json.
# Usage: bench/ghz.sh [HOST:PORT] [extra ghz flags...]   e.g. bench/ghz.sh 127.0.0.1:50051 -c 1 -n 5000
# ghz.json says "insecure": true (plaintext). For a gateway serving TLS, turn it off and pass the CA;
# for mutual TLS also the client certificate and key; for bearer tokens, the metadata:
#   bench/ghz.sh localhost:50051 --no-insecure --cacert ca.crt --cname localhost
#   bench/ghz.sh localhost:50051 --no-insecure --cacert ca.crt --cert client.crt --key client.key
#   bench/ghz.sh 127.0.0.1:50051 --metadata '{"authorization":"Bearer TOKEN"}'
set -euo pipefail
cd "$(dirname "$0")"
host="${1:-127.0.0.1:50051}"
shift || true
exec ghz --config ghz.json "$@" "$host"
