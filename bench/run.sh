#!/usr/bin/env bash
# The performance targets (issues 12 and 26), measured in one run on this machine, pass/fail.
# Servers: the bare tonic server (the same RPC, no upstream), the forwarder (the bare server plus one
# pooled hyper POST per call to the same upstream, plain and TLS), and the gateway against a static nginx
# upstream over plain HTTP, over TLS with HTTP/2 offered by ALPN, over TLS with HTTP/1.1 only, and
# over plain HTTP at RUST_LOG=warn (what the per-call line costs) and with JSON lines (the
# container's format). Every gateway writes its log to a
# file, as a container runtime's stdout pipe takes it; the run checks that each file holds exactly
# one complete line per call. The TLS upstreams use a CA made here, passed by SSL_CERT_FILE.
# Loads: ecs-gateway-load (a tonic client, one connection) at c=1 and c=50, ROUNDS times in
# alternation with ghz c=50 over one connection (bench/ghz.json), medians reported; then
# start-to-SERVING. Rows go to bench/results/<time>.jsonl; the summary is the last line.
# With BASELINE=<another ecs-gateway binary> (an older build, say), that binary is measured too,
# in the same rounds (rows baseline-http, baseline-tls, baseline-json), and compared.
# Usage: [BASELINE=path] bench/run.sh [TOTAL_C1] [TOTAL_C50] [ROUNDS]   Traffic goes to 127.0.0.1 only.
set -euo pipefail
# Load, not the account's quota, is measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
N1="${1:-5000}"
N50="${2:-40000}"
ROUNDS="${3:-2}"
NGHZ=20000
OUT="bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
mkdir -p bench/results
GHZ="$(command -v ghz || true)"
[ -x "$GHZ" ] && GHZ="$(realpath "$GHZ")" || { echo "ghz not found: the ghz rows are skipped" >&2; GHZ=; }

# shellcheck source=bench/static-upstream.sh
source bench/static-upstream.sh
work=$(mktemp -d)
more_cleanup() {
    nginx -c "$work/nginx-tls.conf" -s stop 2>/dev/null || true
    sleep 0.2
    rm -rf "$work"
}

# A CA and a certificate for 127.0.0.1 (EC P-256), for the TLS upstreams.
( cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
      -subj /CN=bench-ca -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
      -addext subjectAltName=IP:127.0.0.1 -keyout tls.key -out tls.csr 2>/dev/null
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
      -copy_extensions copy -out tls.crt 2>/dev/null )
# The same static answer as bench/nginx.conf, over TLS: h2 and http/1.1 by ALPN on 18443,
# http/1.1 only on 18444.
cat > "$work/nginx-tls.conf" <<EOF
worker_processes 1;
pid $work/nginx-tls.pid;
error_log $work/nginx-tls.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    ssl_certificate $work/tls.crt;
    ssl_certificate_key $work/tls.key;
    ssl_session_cache shared:bench:1m;
    server {
        listen 127.0.0.1:18443 ssl http2;
        location / { default_type application/json; return 200 '{"RequestId":"473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E"}'; }
    }
    server {
        listen 127.0.0.1:18444 ssl;
        location / { default_type application/json; return 200 '{"RequestId":"473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E"}'; }
    }
}
EOF
nginx -c "$work/nginx-tls.conf"

$BIN/ecs-gateway-load bare --listen 127.0.0.1:50061 & pids+=($!); BARE=$!
# The floor (issue 26): the bare server plus one pooled POST per call to the same upstream.
$BIN/ecs-gateway-load bare --listen 127.0.0.1:50062 --forward http://127.0.0.1:18080/ &
pids+=($!); FWD_HTTP=$!
SSL_CERT_FILE="$work/ca.crt" $BIN/ecs-gateway-load bare --listen 127.0.0.1:50063 \
    --forward https://127.0.0.1:18443/ & pids+=($!); FWD_TLS=$!
gateway() {  # port endpoint log [env...]
    local port=$1 endpoint=$2 log=$3; shift 3
    env SSL_CERT_FILE="$work/ca.crt" "$@" "${GATEWAY:-$BIN/ecs-gateway}" --listen "127.0.0.1:$port" \
        --endpoint "$endpoint" > "$work/$log.log" &
    pids+=($!)
}
gateway 50052 http://127.0.0.1:18080/ http; GW_HTTP=$!
gateway 50053 https://127.0.0.1:18443/ tls; GW_TLS=$!
gateway 50054 https://127.0.0.1:18444/ tls-h1; GW_TLS_H1=$!
gateway 50055 http://127.0.0.1:18080/ warn RUST_LOG=warn; GW_WARN=$!
gateway 50056 http://127.0.0.1:18080/ json ECS_GATEWAY_LOG_FORMAT=json; GW_JSON=$!
if [ -n "${BASELINE:-}" ]; then
    GATEWAY="$(realpath "$BASELINE")"
    gateway 50057 http://127.0.0.1:18080/ baseline-http; B_HTTP=$!
    gateway 50058 https://127.0.0.1:18443/ baseline-tls; B_TLS=$!
    gateway 50059 http://127.0.0.1:18080/ baseline-json ECS_GATEWAY_LOG_FORMAT=json; B_JSON=$!
    unset GATEWAY
fi
sleep 1

load() { $BIN/ecs-gateway-load "$@" | tee -a "$OUT"; }
ghz_row() {  # label pid port
    (cd bench && "$GHZ" --config ghz.json -n "$NGHZ" -c 50 --connections 1 -O json "127.0.0.1:$3") \
        > "$work/ghz.json"
    python3 - "$1" "$2" "$work/ghz.json" <<'PY' | tee -a "$OUT"
import json, sys
label, pid, path = sys.argv[1:]
r = json.load(open(path))
rss = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"label": label, "calls": r["count"], "rps": round(r["rps"]),
                  "codes": r.get("statusCodeDistribution", {}),
                  "server_peak_rss_mib": round(int(rss) / 1024, 1)}))
PY
}
# Upstream connections the gateway holds in the middle of a c=50 run: one for HTTP/2 by ALPN, a
# pool of about 50 for HTTP/1.1.
connections() {  # label port pid
    ( sleep 0.7
      n=$(ss -Htnp state established "( dport = :$2 )" | grep -c "pid=$3," || true)
      echo "{\"label\": \"connections-$1\", \"upstream_connections\": $n}" >> "$OUT" ) &
}
for round in $(seq "$ROUNDS"); do
    for c in 1 50; do
        n=$([ "$c" = 1 ] && echo "$N1" || echo "$N50")
        if [ "$c" = 1 ]; then
            load http --url http://127.0.0.1:18080/ -c 1 -n "$n" --label "nginx-c1"
            SSL_CERT_FILE="$work/ca.crt" load http --url https://127.0.0.1:18443/ -c 1 -n "$n" \
                --label "nginx-tls-c1"
        fi
        load grpc --target 127.0.0.1:50061 -c "$c" -n "$n" --pid "$BARE" --label "bare-c$c"
        load grpc --target 127.0.0.1:50062 -c "$c" -n "$n" --pid "$FWD_HTTP" --label "fwd-http-c$c"
        load grpc --target 127.0.0.1:50063 -c "$c" -n "$n" --pid "$FWD_TLS" --label "fwd-tls-c$c"
        connections "http-c$c" 18080 "$GW_HTTP"
        load grpc --target 127.0.0.1:50052 -c "$c" -n "$n" --pid "$GW_HTTP" --label "http-c$c"
        connections "tls-c$c" 18443 "$GW_TLS"
        load grpc --target 127.0.0.1:50053 -c "$c" -n "$n" --pid "$GW_TLS" --label "tls-c$c"
        connections "tls-h1-c$c" 18444 "$GW_TLS_H1"
        load grpc --target 127.0.0.1:50054 -c "$c" -n "$n" --pid "$GW_TLS_H1" --label "tls-h1-c$c"
        load grpc --target 127.0.0.1:50055 -c "$c" -n "$n" --pid "$GW_WARN" --label "warn-c$c"
        load grpc --target 127.0.0.1:50056 -c "$c" -n "$n" --pid "$GW_JSON" --label "json-c$c"
        if [ -n "${BASELINE:-}" ]; then
            load grpc --target 127.0.0.1:50057 -c "$c" -n "$n" --pid "$B_HTTP" --label "baseline-http-c$c"
            load grpc --target 127.0.0.1:50058 -c "$c" -n "$n" --pid "$B_TLS" --label "baseline-tls-c$c"
            load grpc --target 127.0.0.1:50059 -c "$c" -n "$n" --pid "$B_JSON" --label "baseline-json-c$c"
        fi
    done
    if [ -n "$GHZ" ]; then
        ghz_row ghz-bare "$BARE" 50061
        ghz_row ghz-http "$GW_HTTP" 50052
        ghz_row ghz-tls "$GW_TLS" 50053
        if [ -n "${BASELINE:-}" ]; then
            ghz_row ghz-baseline-http "$B_HTTP" 50057
        fi
    fi
    echo "round $round done" >&2
done
$BIN/ecs-gateway-load startup --target 127.0.0.1:50071 -- \
    $BIN/ecs-gateway --listen 127.0.0.1:50071 --endpoint http://127.0.0.1:18080/ | tee -a "$OUT"

# The audit trail: one complete line per call in each gateway's file (warm-up calls included).
sleep 0.5
for log in http tls tls-h1 json; do
    python3 - "$log" "$work/$log.log" <<'PY' | tee -a "$OUT"
import json, sys
label, path = sys.argv[1:]
data = open(path, "rb").read()
lines = data.split(b"\n")[:-1]
if label == "json":  # every line a whole JSON object
    objects = [json.loads(l) for l in lines]
    finished = sum(1 for o in objects
                   if o.get("message") == "call finished" and o["span"]["grpc_code"] == "Ok")
else:
    finished = sum(1 for l in lines if l.endswith(b"call finished") and b"grpc_code=Ok" in l)
print(json.dumps({"label": f"audit-{label}", "lines": len(lines), "finished": finished,
                  "ends_with_newline": data.endswith(b"\n")}))
PY
done
python3 bench/targets.py "$OUT" "$N1" "$N50" "$ROUNDS" "$NGHZ"
echo "results: $OUT"
