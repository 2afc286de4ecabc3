#!/usr/bin/env bash
# What waiting streams cost one replica: ecs-gateway-load `waits` holds STREAMS
# StopInvocationAndWait streams open on a gateway in front of its in-process simulator (executions
# that never finish stopping), once with every stream on its own invocation (one poll loop each) and
# once with all of them on one invocation (one shared loop), and reports the gateway's RSS, its CPU
# while the streams idle-wait, and the DescribeInvocations polls per second. Then one wait on an
# invocation of INSTANCES running instances (ecs-gateway-load `wide`, the gateway at its default log
# level): the gateway's CPU per instance stopped, from the call until every instance is Stopped.
# 127.0.0.1 only.
# Usage: bench/waits.sh [STREAMS] [HOLD] [INSTANCES]
set -euo pipefail
# Load, not the account's quota, is measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
STREAMS="${1:-1000}"
HOLD="${2:-20s}"
INSTANCES="${3:-1000}"
OUT="bench/results/waits-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
mkdir -p bench/results
cargo build --release --locked --bins --features bench
BIN=target/release
export ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIdemoGatewayKey
export ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret-not-for-production
export ECS_GATEWAY_METADATA_ENDPOINT=http://127.0.0.1:9

run() {  # invocations label
    RUST_LOG=warn $BIN/ecs-gateway --listen 127.0.0.1:50091 --endpoint http://127.0.0.1:18090/ \
        --max-concurrent-streams 1000 >/dev/null 2>&1 &
    local gw=$!
    sleep 1
    $BIN/ecs-gateway-load waits --target 127.0.0.1:50091 --simulator 127.0.0.1:18090 \
        --streams "$STREAMS" --invocations "$1" --hold "$HOLD" --pid "$gw" --label "$2" | tee -a "$OUT"
    kill "$gw"
    wait "$gw" 2>/dev/null || true
}
run "$STREAMS" "own-invocation-each"
run 1 "one-shared-invocation"
for round in 1 2 3; do
    $BIN/ecs-gateway --listen 127.0.0.1:50091 --endpoint http://127.0.0.1:18090/ >/dev/null 2>&1 &
    gw=$!
    sleep 1
    $BIN/ecs-gateway-load wide --target 127.0.0.1:50091 --simulator 127.0.0.1:18090 \
        --instances "$INSTANCES" --pid "$gw" --label "wide-$INSTANCES-round$round" | tee -a "$OUT"
    kill "$gw"
    wait "$gw" 2>/dev/null || true
done
echo "results: $OUT"
