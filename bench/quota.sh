#!/usr/bin/env bash
# The account's quota spent by a fleet (issue 35): three replicas sharing one Redis in front of the
# simulator, which keeps StopInvocation's published quota (1000/60s, throttling past it to the end
# of the minute with x-acs-retry-after, as ECS does), under a steady RATE of unary stops a second
# for MINUTES whole minutes. At each minute's end it reads every replica's counters and prints, per
# minute, the StopInvocation calls ECS received, accepted and throttled against the gateways' share
# (--quota-share SHARE), and the calls refused before sending and why. With BASELINE=<another
# ecs-gateway> the same runs against it afterwards (flags it does not know are left out).
# Usage: [BASELINE=bin] [GATEWAY_FLAGS=...] bench/quota.sh [MINUTES] [RATE] [SHARE]
# Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:-3}"
RATE="${2:-30}"
SHARE="${3:-0.5}"
OUT="bench/results/quota-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
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

# Sleeps until SECOND (0 to 60, fractions allowed) into the clock's current or next minute.
until_second() {
    python3 -c "import sys, time; s = float(sys.argv[1]); time.sleep((s - time.time() % 60) % 60 or 60)" "$1"
}

# Sums the counters of the three replicas' /metrics as one JSON object.
scrape() {
    python3 - "$@" <<'EOF'
import json, re, sys, urllib.request
totals = {}
for port in sys.argv[1:]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        local = re.match(r'ecs_gateway_fleet_limiter_local_decisions_total (\S+)', line)
        if local:
            totals["decided_without_redis"] = totals.get("decided_without_redis", 0) + float(local.group(1))
        m = re.match(r'(ecs_gateway_upstream_attempts_total|ecs_gateway_shed_total)\{([^}]*)\} (\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if m.group(1) == "ecs_gateway_upstream_attempts_total":
            if labels.get("action", "StopInvocation") != "StopInvocation":
                continue
            key = "throttled" if labels["ecs_code"].startswith("Throttling") else "other"
            key = "accepted" if labels["ecs_code"] == "none" and labels["http_status"] == "200" else key
            totals["sent"] = totals.get("sent", 0) + float(m.group(3))
        else:
            key = "refused_" + labels["reason"]
        totals[key] = totals.get(key, 0) + float(m.group(3))
print(json.dumps(totals))
EOF
}

run() {  # label binary [gateway flags...]
    local label=$1 bin=$2
    shift 2
    redis-server --port 16380 --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
    RUST_LOG=warn $BIN/ecs-gateway simulator --listen 127.0.0.1:18095 --stop-delay 0s \
        --quota StopInvocation=1000/60s --quota-headers acs >/dev/null 2>&1 & pids+=($!)
    sleep 1
    local ports=()
    for n in 1 2 3; do
        RUST_LOG=warn "$bin" --listen "127.0.0.1:5010$n" --metrics-listen "127.0.0.1:1950$n" \
            --endpoint http://127.0.0.1:18095/ --redis-url redis://127.0.0.1:16380/ "$@" \
            >/dev/null 2>&1 & pids+=($!)
        ports+=("1950$n")
    done
    sleep 2
    # The counters are read half a second before each minute's end, when its share is long
    # spent, so that no call of the next window is counted in this one; the load starts at a
    # minute's start, as ECS's windows do.
    local before="" after=""
    until_second 59.5
    before=$(scrape "${ports[@]}")
    until_second 0
    local load=()
    for n in 1 2 3; do
        $BIN/ecs-gateway-load grpc --target "127.0.0.1:5010$n" -c 4 --warmup 0 \
            --rate "$(python3 -c "print($RATE/3)")" --duration "$((MINUTES * 60))s" \
            --label "$label-replica$n" >> "$OUT.load" & load+=($!)
    done
    for minute in $(seq 1 "$MINUTES"); do
        until_second 59.5
        after=$(scrape "${ports[@]}")
        python3 - "$label" "$minute" "$SHARE" "$before" "$after" <<'EOF' | tee -a "$OUT"
import json, sys
label, minute, share, before, after = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])
delta = {k: round(after.get(k, 0) - before.get(k, 0)) for k in sorted(set(after) | set(before))}
print(json.dumps({"build": label, "minute": minute, "quota": 1000, "share": int(1000 * share), **{k: v for k, v in delta.items() if v}}))
EOF
        before=$after
    done
    wait "${load[@]}" || true
    cleanup
    pids=()
}

# shellcheck disable=SC2086 # GATEWAY_FLAGS is a list of flags for the new build, such as --redis-timeout 50ms.
run new "$BIN/ecs-gateway" --quota-share "$SHARE" ${GATEWAY_FLAGS:-}
if [ -n "${BASELINE:-}" ]; then
    run baseline "$(realpath "$BASELINE")"
fi
echo "results: $OUT (per minute), $OUT.load (what the callers saw)"
