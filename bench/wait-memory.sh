#!/usr/bin/env bash
# What held waits cost in memory, against a baseline build in the same run: ecs-gateway-load
# `waits` holds STREAMS StopInvocationAndWait streams on a gateway in front of its in-process
# simulator (executions that never finish stopping) in two shapes — every stream on one
# 1,000-instance invocation (the README's t-demo1000 case), WIDE streams each on its own
# 1,000-instance invocation (what one followed invocation costs), and 1,000 streams over 100
# distinct 1,000-instance invocations (the defaults' worst case: --max-concurrent-waits 1000,
# --max-polled-invocations 100) — and reports the gateway's RSS while they wait and once they are
# gone. 127.0.0.1 only.
# Usage: BASELINE=/path/to/old/ecs-gateway bench/wait-memory.sh [STREAMS] [WIDE] [HOLD]
set -euo pipefail
# Load, not the account's quota, is measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
STREAMS="${1:-1000}"
WIDE="${2:-200}"
HOLD="${3:-5s}"
OUT="bench/results/wait-memory-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
mkdir -p bench/results
cargo build --release --locked --bins --features bench
export ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIdemoGatewayKey
export ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret-not-for-production
export ECS_GATEWAY_METADATA_ENDPOINT=http://127.0.0.1:9

run() {  # binary label streams invocations [gateway flags...]
    local bin=$1 label=$2 streams=$3 invocations=$4
    shift 4
    RUST_LOG=warn "$bin" --listen 127.0.0.1:50092 --endpoint http://127.0.0.1:18091/ \
        --max-concurrent-streams 1000 "$@" >/dev/null 2>&1 &
    local gw=$!
    sleep 1
    target/release/ecs-gateway-load waits --target 127.0.0.1:50092 --simulator 127.0.0.1:18091 \
        --streams "$streams" --invocations "$invocations" --instances 1000 --hold "$HOLD" \
        --pid "$gw" --label "$label" | tee -a "$OUT"
    kill "$gw"
    wait "$gw" 2>/dev/null || true
}
# The anonymous benchmark client is one caller: lift the per-caller share so it may hold them all.
NEW=(--max-waits-per-caller 100000 --max-concurrent-waits 100000 --max-polled-invocations 100000)
DEFAULTS=(--max-waits-per-caller 100000)
for round in 1 2; do
    run target/release/ecs-gateway "new-one-invocation-r$round" "$STREAMS" 1 "${NEW[@]}"
    [ -n "${BASELINE:-}" ] && run "$BASELINE" "baseline-one-invocation-r$round" "$STREAMS" 1
    run target/release/ecs-gateway "new-own-invocation-each-r$round" "$WIDE" "$WIDE" "${NEW[@]}"
    [ -n "${BASELINE:-}" ] && run "$BASELINE" "baseline-own-invocation-each-r$round" "$WIDE" "$WIDE"
    run target/release/ecs-gateway "new-defaults-worst-r$round" 1000 100 "${DEFAULTS[@]}"
    [ -n "${BASELINE:-}" ] && run "$BASELINE" "baseline-defaults-worst-r$round" 1000 100
done
echo "results: $OUT"
