#!/usr/bin/env bash
# What following many waits costs the account's read quota (issue 35): ecs-gateway-load `waits`
# holds STREAMS StopInvocationAndWait streams, each on its own invocation, on one replica in front of
# its in-process simulator (executions that never finish stopping), and reports the DescribeInvocations
# calls the simulator received per second once every stream waits, listing pages included. With
# BASELINE=<another ecs-gateway> the same runs against it in alternating rounds (the load tool is this
# tree's for both). Replicas multiply both builds' figures alike: without a lease each replica lists or
# reads for itself.
# Then, with executions that end STOP_DELAY after their stop (ecs-gateway-load `ends`), the time from
# an execution's end to its caller's last message (p50, p99) and the reads all the waits took.
# Usage: [BASELINE=bin] [STOP_DELAY=20s] bench/reads.sh [STREAMS] [HOLD] [ROUNDS]
# Traffic goes to 127.0.0.1 only.
set -euo pipefail
# Reads, not the stop quota, are measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
STREAMS="${1:-1000}"
HOLD="${2:-60s}"
ROUNDS="${3:-2}"
OUT="bench/results/reads-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
mkdir -p bench/results
cargo build --release --locked --bins --features bench
BIN=target/release
export ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIdemoGatewayKey
export ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret-not-for-production
export ECS_GATEWAY_METADATA_ENDPOINT=http://127.0.0.1:9

run() {  # mode label binary [gateway flags...]: one gateway, and the load tool's MODE against it
    local mode=$1 label=$2 bin=$3
    shift 3
    RUST_LOG=warn "$bin" --listen 127.0.0.1:50093 --endpoint http://127.0.0.1:18093/ \
        --max-concurrent-streams 1000 "$@" >/dev/null 2>&1 &
    local gw=$!
    sleep 1
    local load=(--target 127.0.0.1:50093 --simulator 127.0.0.1:18093 --streams "$STREAMS" --label "$label")
    if [ "$mode" = waits ]; then
        load+=(--invocations "$STREAMS" --hold "$HOLD" --pid "$gw")
    else
        load+=(--stop-delay "${STOP_DELAY:-20s}")
    fi
    $BIN/ecs-gateway-load "$mode" "${load[@]}" | tee -a "$OUT"
    kill "$gw"
    wait "$gw" 2>/dev/null || true
}
# This build bounds waits (issue 34); lift the bounds to the streams held.
lifted=(--max-concurrent-waits "$STREAMS" --max-waits-per-caller "$STREAMS" --max-polled-invocations "$STREAMS")
for mode in waits ends; do
    suffix=${mode/waits/}
    for round in $(seq 1 "$ROUNDS"); do
        run "$mode" "new${suffix:+-$suffix}-round$round" "$BIN/ecs-gateway" "${lifted[@]}"
        if [ -n "${BASELINE:-}" ]; then
            run "$mode" "baseline${suffix:+-$suffix}-round$round" "$(realpath "$BASELINE")"
        fi
    done
done
echo "results: $OUT"
