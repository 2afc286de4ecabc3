#!/usr/bin/env bash
# Where a gateway's CPU goes at c=50 against the static nginx upstream: perf samples with DWARF
# stacks from the `profiling` build (release with symbols), then the top self-time symbols and the
# share of samples under each part of the call (the log line, signing, the HTTP leg, …).
# Usage: bench/profile.sh [text|json|warn|forwarder] [SECONDS]   Traffic goes to 127.0.0.1 only.
set -euo pipefail
# Load, not the account's quota, is measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
MODE="${1:-json}"
SECONDS_="${2:-5}"
command -v perf >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq linux-perf; }
cargo build --profile profiling --locked --bins --features bench
# shellcheck source=bench/static-upstream.sh
source bench/static-upstream.sh
PROF=target/profiling
out="bench/results/profile-$MODE-$(date -u +%Y%m%dT%H%M%SZ)"
work=$(mktemp -d)
more_cleanup() { rm -rf "$work"; }

case "$MODE" in
    forwarder) $PROF/ecs-gateway-load bare --listen 127.0.0.1:50081 \
                   --forward http://127.0.0.1:18080/ 2>/dev/null & ;;
    text) $PROF/ecs-gateway --listen 127.0.0.1:50081 --endpoint http://127.0.0.1:18080/ \
              > "$work/log" & ;;
    json) ECS_GATEWAY_LOG_FORMAT=json $PROF/ecs-gateway --listen 127.0.0.1:50081 \
              --endpoint http://127.0.0.1:18080/ > "$work/log" & ;;
    warn) RUST_LOG=warn $PROF/ecs-gateway --listen 127.0.0.1:50081 \
              --endpoint http://127.0.0.1:18080/ > "$work/log" & ;;
    *) echo "mode: text, json, warn or forwarder" >&2; exit 2 ;;
esac
pid=$!; pids+=("$pid")
sleep 1
$BIN/ecs-gateway-load grpc --target 127.0.0.1:50081 -c 50 --duration "$((SECONDS_ + 3))s" \
    --pid "$pid" --label "profile-$MODE" > "$work/load" &
load=$!
sleep 1.5
perf record -q -F 1999 --call-graph dwarf,32768 -p "$pid" -o "$work/perf.data" \
    -- sleep "$SECONDS_" 2>/dev/null
wait "$load"
cat "$work/load"
perf report -i "$work/perf.data" --no-children --stdio --sort symbol --fields overhead,sym --percent-limit 0.7 \
    2>/dev/null | grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+-[[:space:]]+-$//; s/[[:space:]]+$//' | sort -rn > "$out.self.txt"
perf script -i "$work/perf.data" -F comm,ip,sym 2>/dev/null > "$work/stacks"
python3 bench/stack_shares.py "$work/stacks" | tee "$out.parts.txt"
echo "top self time: $out.self.txt"
head -25 "$out.self.txt"
