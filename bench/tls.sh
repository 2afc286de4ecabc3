#!/usr/bin/env bash
# What mutual TLS costs: the same gateway build serving plaintext and mutual TLS side by side, both
# against the static nginx upstream, driven by ghz at c=50 over one reused connection (as ghz does
# by default). Runs alternate plain / mTLS ROUNDS times; prints server CPU per call for each run
# and the mTLS/plain ratio of the medians. Then what a connection that is not reused costs: 5 s of
# full mutual-TLS handshakes (openssl s_time -new), server CPU per handshake, against a plain call.
# Certificates are made here with openssl, in a temp dir.
# Usage: bench/tls.sh [TOTAL_PER_RUN] [ROUNDS]     Traffic goes to 127.0.0.1 only.
set -euo pipefail
# Load, not the account's quota, is measured here: lift StopInvocation's default 1000/60s.
export ECS_GATEWAY_API_QUOTA=StopInvocation=1000000/60s
cd "$(dirname "$0")/.."
N="${1:-20000}"
ROUNDS="${2:-3}"
GHZ="${GHZ:-$(command -v ghz)}" || { echo "bench/tls.sh drives ghz: put it on PATH or set GHZ" >&2; exit 1; }
GHZ="$(realpath "$GHZ")"
command -v nginx >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nginx; }
cargo build --release --locked --bin ecs-gateway
BIN=target/release/ecs-gateway
export ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIdemoGatewayKey
export ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret-not-for-production

pki=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    nginx -c "$PWD/bench/nginx.conf" -s stop 2>/dev/null || true
    rm -rf "$pki"
}
trap cleanup EXIT

# A CA, a server certificate for localhost, a client certificate naming a SPIFFE ID (EC P-256).
( cd "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
      -subj /CN=bench-ca -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
      -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout tls.key -out tls.csr 2>/dev/null
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -copy_extensions copy \
      -out tls.crt 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench-client \
      -addext subjectAltName=URI:spiffe://bench/client -keyout client.key -out client.csr 2>/dev/null
  openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -copy_extensions copy \
      -out client.crt 2>/dev/null )

nginx -c "$PWD/bench/nginx.conf"
$BIN --listen 127.0.0.1:50052 --endpoint http://127.0.0.1:18080/ >/dev/null & pids+=($!); PLAIN=$!
$BIN --listen 127.0.0.1:50053 --endpoint http://127.0.0.1:18080/ --tls-cert "$pki/tls.crt" \
    --tls-key "$pki/tls.key" --tls-client-ca "$pki/ca.crt" >/dev/null & pids+=($!); MTLS=$!
sleep 1

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() {  # label pid host [ghz TLS flags...]
    local label=$1 pid=$2 host=$3; shift 3
    local before after
    before=$(ticks "$pid")
    (cd bench && "$GHZ" --config ghz.json -n "$N" -c 50 --connections 1 "$@" -O json "$host") > "$pki/$label.json"
    after=$(ticks "$pid")
    python3 - "$label" "$before" "$after" "$N" "$pki/$label.json" <<'PY'
import json, os, sys
label, before, after, n, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
r = json.load(open(path))
tck = os.sysconf("SC_CLK_TCK")
ok = r.get("statusCodeDistribution", {}).get("OK", 0)
print(json.dumps({"label": label, "calls": n, "ok": ok, "rps": round(r["rps"]),
                  "p50_ms": round(r["latencyDistribution"][2]["latency"] / 1e6, 3) if r.get("latencyDistribution") else None,
                  "server_cpu_us_per_call": round((after - before) / tck * 1e6 / n, 1)}))
PY
}
results="$pki/all.jsonl"
for _ in $(seq "$ROUNDS"); do
    run plain "$PLAIN" 127.0.0.1:50052 --insecure | tee -a "$results"
    run mtls "$MTLS" 127.0.0.1:50053 --cacert "$pki/ca.crt" --cert "$pki/client.crt" \
        --key "$pki/client.key" --cname localhost --no-insecure | tee -a "$results"
done
before=$(ticks "$MTLS")
handshakes=$(openssl s_time -connect 127.0.0.1:50053 -new -time 5 -cert "$pki/client.crt" \
    -key "$pki/client.key" -CAfile "$pki/ca.crt" 2>/dev/null | awk '/connections in .* real/ {print $1}')
after=$(ticks "$MTLS")
python3 - "$handshakes" "$before" "$after" >> "$results" <<'PY'
import json, os, sys
n, before, after = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print(json.dumps({"label": "mtls-handshake", "handshakes": n,
                  "server_cpu_us_per_handshake": round((after - before) / os.sysconf("SC_CLK_TCK") * 1e6 / n, 1)}))
PY
tail -1 "$results"
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
handshake = [r for r in rows if r["label"] == "mtls-handshake"][0]["server_cpu_us_per_handshake"]
rows = [r for r in rows if r["label"] != "mtls-handshake"]
assert all(r["ok"] == r["calls"] for r in rows), "some calls failed"
med = lambda label, key: statistics.median(r[key] for r in rows if r["label"] == label)
cpu_p, cpu_m = med("plain", "server_cpu_us_per_call"), med("mtls", "server_cpu_us_per_call")
rps_p, rps_m = med("plain", "rps"), med("mtls", "rps")
print(json.dumps({"median_cpu_us_per_call": {"plain": cpu_p, "mtls": cpu_m},
                  "cpu_ratio_mtls_over_plain": round(cpu_m / cpu_p, 3),
                  "median_rps": {"plain": rps_p, "mtls": rps_m},
                  "rps_ratio_mtls_over_plain": round(rps_m / rps_p, 3),
                  "handshake_cpu_us": handshake,
                  "handshake_over_plain_call": round(handshake / cpu_p, 2)}))
PY
