#!/usr/bin/env bash
# The long soak: gateway against the simulator with faults (5% 503, 1% resets, 50-200 ms latency),
# concurrency 50, for DURATION (default 10m). Samples the gateway's RSS every 10 s and prints the
# status counts. Traffic goes to 127.0.0.1 only and stops by itself.
# Usage: bench/soak.sh [DURATION]
set -euo pipefail
# Load, not the account's quota, is measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
DURATION="${1:-10m}"
OUT="bench/results/soak-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p bench/results
cargo build --release --locked --bins --features bench
BIN=target/release
export ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIdemoGatewayKey
export ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret-not-for-production

$BIN/ecs-gateway simulator --listen 127.0.0.1:18091 --latency 50ms..200ms \
    --error-503-rate 0.05 --reset-rate 0.01 >/dev/null & SIM=$!
RUST_LOG=warn $BIN/ecs-gateway --listen 127.0.0.1:50091 --endpoint http://127.0.0.1:18091/ >"$OUT.gateway.log" & GW=$!
trap 'kill $SIM $GW 2>/dev/null || true' EXIT
sleep 1

( while kill -0 $GW 2>/dev/null; do
    echo "$(date -u +%s) $(awk '/VmRSS/ {print $2}' /proc/$GW/status)"; sleep 10
  done ) > "$OUT.rss" &
SAMPLER=$!

$BIN/ecs-gateway-load grpc --target 127.0.0.1:50091 -c 50 --duration "$DURATION" --warmup 0 \
    --pid $GW --label "soak-$DURATION" | tee "$OUT.jsonl"
kill $SAMPLER 2>/dev/null || true
echo "RSS KiB (first, min, max, last):"
awk 'NR==1{f=$2; mn=$2; mx=$2} {if($2<mn)mn=$2; if($2>mx)mx=$2; l=$2} END{print f, mn, mx, l}' "$OUT.rss"
