#!/usr/bin/env bash
# The cost of metrics (issue 13): server CPU per call at c=50 against the static nginx upstream,
# for the bare tonic server, the gateway without metrics and the gateway with --metrics-listen
# scraped every second, in one run, twice in alternation. Prints the load tool's JSON lines.
# Usage: bench/metrics.sh [TOTAL_C50]     Traffic goes to 127.0.0.1 only.
set -euo pipefail
# Load, not the account's quota, is measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
N="${1:-40000}"
# shellcheck source=bench/static-upstream.sh
source bench/static-upstream.sh
$BIN/ecs-gateway-load bare --listen 127.0.0.1:50061 & pids+=($!); BARE=$!
$BIN/ecs-gateway --listen 127.0.0.1:50052 --endpoint http://127.0.0.1:18080/ >/dev/null & pids+=($!); OFF=$!
$BIN/ecs-gateway --listen 127.0.0.1:50053 --endpoint http://127.0.0.1:18080/ --metrics-listen 127.0.0.1:19464 >/dev/null & pids+=($!); ON=$!
sleep 1
# A scraper, as Prometheus would be, once a second.
( while sleep 1; do curl -s -o /dev/null http://127.0.0.1:19464/metrics || true; done ) & pids+=($!)

for round in 1 2; do
    $BIN/ecs-gateway-load grpc --target 127.0.0.1:50061 -c 50 -n "$N" --pid "$BARE" --label "bare-c50-r$round"
    $BIN/ecs-gateway-load grpc --target 127.0.0.1:50052 -c 50 -n "$N" --pid "$OFF" --label "metrics-off-c50-r$round"
    $BIN/ecs-gateway-load grpc --target 127.0.0.1:50053 -c 50 -n "$N" --pid "$ON" --label "metrics-on-c50-r$round"
done
