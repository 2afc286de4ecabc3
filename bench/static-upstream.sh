# Sourced by bench scripts (after `cd` to the repository): the release build in $BIN, a demo
# credential, nginx as the static ECS upstream on 127.0.0.1:18080, and `pids`, whose processes are
# stopped on exit together with nginx; a script may define `more_cleanup`, run after that.
command -v nginx >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nginx; }
cargo build --release --locked --bins --features bench
BIN=target/release
export ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIdemoGatewayKey
export ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret-not-for-production
export ECS_GATEWAY_METADATA_ENDPOINT=http://127.0.0.1:9

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    nginx -c "$PWD/bench/nginx.conf" -s stop 2>/dev/null || true
    if declare -F more_cleanup >/dev/null; then more_cleanup; fi
}
trap cleanup EXIT
nginx -c "$PWD/bench/nginx.conf"
