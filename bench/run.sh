#!/usr/bin/env bash
# Measures, in one run on this machine: the bare tonic server, the gateway against the simulator,
# the gateway against a static nginx upstream, nginx and the simulator on their own; at concurrency
# 1 and 50. Prints one JSON line per run (bench/results/*.jsonl) and start-to-SERVING time.
# Usage: bench/run.sh [TOTAL_C1] [TOTAL_C50]     Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
N1="${1:-5000}"
N50="${2:-40000}"
OUT="bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
mkdir -p bench/results

command -v nginx >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nginx; }
cargo build --release --locked --bins
BIN=target/release
export ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIdemoGatewayKey
export ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret-not-for-production

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; nginx -c "$PWD/bench/nginx.conf" -s stop 2>/dev/null || true; }
trap cleanup EXIT

nginx -c "$PWD/bench/nginx.conf"
$BIN/ecs-gateway-load bare --listen 127.0.0.1:50061 & pids+=($!); BARE=$!
$BIN/ecs-gateway simulator --listen 127.0.0.1:18081 >/dev/null & pids+=($!); SIM=$!
$BIN/ecs-gateway --listen 127.0.0.1:50051 --endpoint http://127.0.0.1:18081/ >/dev/null & pids+=($!); GW_SIM=$!
$BIN/ecs-gateway --listen 127.0.0.1:50052 --endpoint http://127.0.0.1:18080/ >/dev/null & pids+=($!); GW_NGINX=$!
sleep 1

load() { $BIN/ecs-gateway-load "$@" | tee -a "$OUT"; }
for c in 1 50; do
    n=$([ "$c" = 1 ] && echo "$N1" || echo "$N50")
    load http --url http://127.0.0.1:18080/ -c "$c" -n "$n" --label "nginx-direct-c$c"
    load ecs --url http://127.0.0.1:18081/ -c "$c" -n "$n" --pid "$SIM" --label "simulator-direct-signed-c$c"
    load grpc --target 127.0.0.1:50061 -c "$c" -n "$n" --pid "$BARE" --label "bare-c$c"
    load grpc --target 127.0.0.1:50052 -c "$c" -n "$n" --pid "$GW_NGINX" --label "gateway-nginx-c$c"
    load grpc --target 127.0.0.1:50051 -c "$c" -n "$n" --pid "$GW_SIM" --label "gateway-simulator-c$c"
done
$BIN/ecs-gateway-load startup --target 127.0.0.1:50071 -- \
    $BIN/ecs-gateway --listen 127.0.0.1:50071 --endpoint http://127.0.0.1:18080/ | tee -a "$OUT"
echo "results: $OUT"
