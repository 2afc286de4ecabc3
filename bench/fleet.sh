#!/usr/bin/env bash
# The cost of the fleet limiter (issue 14): c=1 latency and server CPU per call against the static
# nginx upstream, for the bare tonic server, the gateway without a limiter and the gateway with
# --redis-url and a --fleet-rate high enough to refuse nothing (so every call pays the Redis round
# trip and nothing else changes), in one run, twice in alternation. Prints the load tool's JSON lines.
# Usage: bench/fleet.sh [TOTAL_C1]     Traffic goes to 127.0.0.1 only.
set -euo pipefail
# Load, not the account's quota, is measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
N="${1:-5000}"
command -v redis-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq redis-server; }
# shellcheck source=bench/static-upstream.sh
source bench/static-upstream.sh
redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
$BIN/ecs-gateway-load bare --listen 127.0.0.1:50061 & pids+=($!); BARE=$!
$BIN/ecs-gateway --listen 127.0.0.1:50052 --endpoint http://127.0.0.1:18080/ >/dev/null & pids+=($!); OFF=$!
sleep 0.5
$BIN/ecs-gateway --listen 127.0.0.1:50053 --endpoint http://127.0.0.1:18080/ \
    --redis-url redis://127.0.0.1:16379/ --fleet-rate 1000000 >/dev/null & pids+=($!); ON=$!
sleep 1

for round in 1 2; do
    $BIN/ecs-gateway-load grpc --target 127.0.0.1:50061 -c 1 -n "$N" --pid "$BARE" --label "bare-c1-r$round"
    $BIN/ecs-gateway-load grpc --target 127.0.0.1:50052 -c 1 -n "$N" --pid "$OFF" --label "limiter-off-c1-r$round"
    $BIN/ecs-gateway-load grpc --target 127.0.0.1:50053 -c 1 -n "$N" --pid "$ON" --label "limiter-on-c1-r$round"
done
