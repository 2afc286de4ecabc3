#!/usr/bin/env bash
# Runs the README's run command exactly as written, waits for health SERVING, stops the demo
# invocation with grpcurl as the README shows, then stops the service with SIGTERM and checks
# that it drained and exited. Used by .ci/run; needs grpcurl on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

run_cmd=$(grep -E '^cargo run' README.md | grep -- '--dev' | head -n 1)
[ -n "$run_cmd" ] || { echo "no 'cargo run ... --dev' line in README.md" >&2; exit 1; }
addr=localhost:50051
log=$(mktemp)
cleanup() { kill -KILL -- -"$pid" 2>/dev/null || true; rm -f "$log"; }

echo "\$ $run_cmd"
setsid bash -c "$run_cmd" >"$log" 2>&1 &
pid=$!
trap cleanup EXIT

serving=
for _ in $(seq 600); do
    if grep -q '"SERVING"' <<<"$(grpcurl -plaintext -max-time 2 -d '{"service":""}' "$addr" \
        grpc.health.v1.Health/Check 2>/dev/null || true)"; then
        serving=yes
        break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
done
if [ -z "$serving" ]; then
    echo "the service never reported SERVING:" >&2
    tail -n 20 "$log" >&2
    exit 1
fi
echo "health: SERVING"

answer=$(grpcurl -plaintext -d '{"region_id":"cn-hangzhou","invoke_id":"t-demo0001"}' \
    "$addr" ecsgateway.v1.CloudAssistantService/StopInvocation)
echo "$answer"
grep -Eq '"requestId": "[0-9A-F-]{36}"' <<<"$answer" || { echo "no RequestId in the answer" >&2; exit 1; }

kill -TERM -- -"$pid"
for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    echo "still running 10 s after SIGTERM" >&2
    exit 1
fi
grep -q 'server stopped' "$log" || { echo "no clean stop in the log:" >&2; tail -n 20 "$log" >&2; exit 1; }
echo "stopped cleanly on SIGTERM"
