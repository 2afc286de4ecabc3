#!/usr/bin/env bash
# What V3 signing costs the gateway beside V1, measured in one run: two gateways against the same
# static nginx upstream, one per --signature-version, loaded in alternation (ROUNDS times) with
# ecs-gateway-load at c=50; each row reports the server's CPU time per call. The ratio of the
# medians is the summary. Traffic goes to 127.0.0.1 only.
# Usage: bench/signature.sh [CALLS] [ROUNDS]
set -euo pipefail
# Load, not the account's quota, is measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
N="${1:-20000}"
ROUNDS="${2:-3}"
OUT="bench/results/signature-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
mkdir -p bench/results
# shellcheck source=bench/static-upstream.sh
source bench/static-upstream.sh

serve() {  # port version
    RUST_LOG=warn $BIN/ecs-gateway --listen "127.0.0.1:$1" --endpoint http://127.0.0.1:18080/ \
        --signature-version "$2" >/dev/null 2>&1 &
}
serve 50081 v1; pids+=($!); V1=$!
serve 50083 v3; pids+=($!); V3=$!
for port in 50081 50083; do
    $BIN/ecs-gateway-load startup --target "127.0.0.1:$port" --label warmup -- true >/dev/null 2>&1 || true
done
sleep 1
for round in $(seq "$ROUNDS"); do
    $BIN/ecs-gateway-load grpc --target 127.0.0.1:50081 -c 50 -n "$N" --pid "$V1" --label "v1-c50" | tee -a "$OUT"
    $BIN/ecs-gateway-load grpc --target 127.0.0.1:50083 -c 50 -n "$N" --pid "$V3" --label "v3-c50" | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(label, key):
    return statistics.median(r[key] for r in rows if r.get("label") == label)
key = "server_cpu_us_per_call"
v1, v3 = med("v1-c50", key), med("v3-c50", key)
print(json.dumps({"summary": "v3 vs v1", key + "_v1": v1, key + "_v3": v3,
                  "v3_minus_v1_us": round(v3 - v1, 2), "ratio": round(v3 / v1, 3)}))
PY
