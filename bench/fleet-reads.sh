#!/usr/bin/env bash
# Whether waits' reads grow with replicas (issue 35): ecs-gateway-load `waits` holds STREAMS
# StopInvocationAndWait streams, each on its own invocation, spread over three replicas in front of
# its in-process simulator (executions that never finish stopping), and reports the
# DescribeInvocations calls the simulator received per second once every stream waits. Three runs
# a round: the replicas sharing one Redis (one polls each group for the fleet), the same replicas
# without Redis (each polls its own), and, with BASELINE=<another ecs-gateway>, that build's three
# replicas on the same Redis.
# Usage: [BASELINE=bin] bench/fleet-reads.sh [STREAMS] [HOLD] [ROUNDS]
# Traffic goes to 127.0.0.1 only.
set -euo pipefail
# Reads, not the stop quota, are measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
STREAMS="${1:-1000}"
HOLD="${2:-60s}"
ROUNDS="${3:-2}"
OUT="bench/results/fleet-reads-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
mkdir -p bench/results
command -v redis-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq redis-server; }
cargo build --release --locked --bins --features bench
BIN=target/release
export ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIdemoGatewayKey
export ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret-not-for-production
export ECS_GATEWAY_METADATA_ENDPOINT=http://127.0.0.1:9
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

run() {  # label binary [gateway flags...]
    local label=$1 bin=$2
    shift 2
    redis-server --port 16381 --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
    sleep 0.5
    local targets=() first=""
    for n in 1 2 3; do
        RUST_LOG=warn "$bin" --listen "127.0.0.1:5011$n" --endpoint http://127.0.0.1:18094/ \
            --max-concurrent-streams 1000 "$@" >/dev/null 2>&1 & pids+=($!)
        first=${first:-$!}
        targets+=("127.0.0.1:5011$n")
    done
    sleep 1.5
    $BIN/ecs-gateway-load waits --target "$(IFS=,; echo "${targets[*]}")" --simulator 127.0.0.1:18094 \
        --streams "$STREAMS" --invocations "$STREAMS" --hold "$HOLD" --pid "$first" --label "$label" | tee -a "$OUT"
    cleanup
    pids=()
}
# This build bounds waits per replica (issue 34); lift the bounds to the streams held.
lifted=(--max-concurrent-waits "$STREAMS" --max-waits-per-caller "$STREAMS" --max-polled-invocations "$STREAMS")
for round in $(seq 1 "$ROUNDS"); do
    run "new-redis-round$round" "$BIN/ecs-gateway" "${lifted[@]}" --redis-url redis://127.0.0.1:16381/
    run "new-alone-round$round" "$BIN/ecs-gateway" "${lifted[@]}"
    if [ -n "${BASELINE:-}" ]; then
        run "baseline-redis-round$round" "$(realpath "$BASELINE")" --redis-url redis://127.0.0.1:16381/
    fi
done
echo "results: $OUT"
