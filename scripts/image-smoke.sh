#!/usr/bin/env bash
# Builds the project's Dockerfile into an image, unchanged, and smoke-tests the container as it
# ships (no `dev` feature), pulling nothing from any container registry: rootful podman with runc,
# and a debian:bookworm-slim base made from Debian's own packages by mmdebstrap. Run as root from
# anywhere; .ci/run calls it after the tests.
#
#   MODE=prebuilt (default): the host's release binary (built without `dev`) stands in for the
#                            Dockerfile's builder stage; a minute or two.
#   MODE=full:               every stage runs, on a local stand-in for rust:1.95-slim-bookworm made
#                            from Debian's rustc/cargo; 386 s cold on a 2-core machine.
#
# The container uses the host's network and listens on 127.0.0.1 only (never a bridge, never -p),
# with a read-only root and every capability dropped. ECS is the dev build's `ecs-gateway
# simulator` on a loopback port, checking signatures against a credential made for this run.
# Where podman cannot run, it says so and fails only under CI.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${MODE:-prebuilt}
work=${WORK:-/tmp/ecs-gateway-image}
image=localhost/ecs-gateway:ci
name=ecs-gateway-smoke
grpc=127.0.0.1:15051
metrics=127.0.0.1:19464
health=127.0.0.1:18081
ecs_port=18080
mkdir -p "$work"
t() { printf '[%4ss] %s\n' "$SECONDS" "$*"; }
unavailable() {
    echo "image-smoke: $* — the image is not built or tested here" >&2
    [ -n "${CI:-}" ] && exit 1
    exit 0
}

t "tools (Debian packages: podman runc mmdebstrap curl)"
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null \
    || ! command -v curl >/dev/null; then
    [ "$(id -u)" = 0 ] || unavailable "podman, runc or mmdebstrap is missing and installing them needs root"
    command -v apt-get >/dev/null || unavailable "podman, runc or mmdebstrap is missing and there is no apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman runc mmdebstrap uidmap curl >/dev/null
fi
command -v grpcurl >/dev/null || unavailable "grpcurl is not on PATH (scripts/test.sh installs it)"

# podman's default container rlimits (1048576) need CAP_SYS_RESOURCE, which these machines
# withhold, and podman caps its own RLIMIT_NPROC at 32768; crun refuses their hybrid cgroup v1
# layout, runc copes.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
[ "$nofile" = unlimited ] && nofile=1048576
cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$work/containers.conf
podman info >/dev/null 2>"$work/podman-info.log" || unavailable "podman cannot run: $(tail -n 1 "$work/podman-info.log")"

sim_pid=
cleanup() {
    # One at a time, --ignore: a name that does not exist must not keep the other from going.
    for container in "$name" "$name-dev"; do
        podman rm --ignore -f -t 0 "$container" >/dev/null 2>&1 || true
    done
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
}
trap cleanup EXIT

t "base image debian:bookworm-slim from Debian's packages (kept between runs)"
if ! podman image exists localhost/debian:bookworm-slim; then
    # The Debian mirror apt already uses on this machine, and its security archive.
    targets=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | sort -u)
    mirror=$(awk '$2 == "bookworm" { print $1; exit }' <<<"$targets")
    security=$(awk '$2 == "bookworm-security" { print $1; exit }' <<<"$targets")
    [ -n "$mirror" ] || unavailable "no bookworm mirror in apt's sources"
    sources=("deb $mirror bookworm main" "deb $mirror bookworm-updates main")
    [ -n "$security" ] && sources+=("deb $security bookworm-security main")
    mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --aptopt='APT::Install-Recommends "false"' \
        --customize-hook='printf "%s\n" "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" "APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" >"$1"/etc/apt/apt.conf.d/docker-clean' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/apt/* "$1"/var/log/dpkg.log' \
        bookworm - "${sources[@]}" 2>"$work/mmdebstrap.log" \
        | podman import --quiet --change 'CMD ["bash"]' \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - localhost/debian:bookworm-slim >/dev/null \
        || { tail -n 20 "$work/mmdebstrap.log"; exit 1; }
fi

if [ "$mode" = prebuilt ]; then
    t "the Dockerfile, with the release binary (no dev feature) as its builder stage"
    cargo build --release --locked --quiet --no-default-features --bin ecs-gateway
    rm -rf "$work/prebuilt"; mkdir -p "$work/prebuilt/src/target/release"
    cp target/release/ecs-gateway "$work/prebuilt/src/target/release/"
    built=$SECONDS
    podman build --network host --pull=never --build-context builder="$work/prebuilt" \
        -t "$image" . >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; exit 1; }
else
    t "every stage of the Dockerfile, on a stand-in rust:1.95-slim-bookworm from Debian's rustc"
    built=$SECONDS
    if ! podman image exists localhost/rust:1.95-slim-bookworm; then
        cat >"$work/Containerfile.rust" <<'EOF'
FROM localhost/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends rustc-web cargo-web gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /usr/local/cargo/bin
# The host's trust store is mounted there for the build only (HTTPS to the crate registry needs it).
ENV CARGO_HOME=/usr/local/cargo CARGO_HTTP_CAINFO=/run/ci-host-ca.crt \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
        podman build --network host --pull=never -t localhost/rust:1.95-slim-bookworm \
            -f "$work/Containerfile.rust" "$work" >"$work/build-rust.log" 2>&1 \
            || { tail -n 30 "$work/build-rust.log"; exit 1; }
    fi
    podman build --network host --pull=never -v /etc/ssl/certs/ca-certificates.crt:/run/ci-host-ca.crt:ro \
        -t "$image" . >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; exit 1; }
fi
build_seconds=$((SECONDS - built))
size=$(podman image inspect "$image" --format '{{.Size}}')
user=$(podman image inspect "$image" --format '{{.Config.User}}')
t "image built by podman in ${build_seconds}s: $((size / 1024 / 1024)) MiB ($size bytes), user $user"

t "the shipped image refuses --dev"
set +e
refusal=$(timeout 30 podman run --rm --name "$name-dev" --pull=never --network host --read-only \
    --cap-drop=ALL -e ECS_GATEWAY_LISTEN=$grpc "$image" --dev 2>&1)
status=$?
set -e
podman rm -f -t 0 "$name-dev" >/dev/null 2>&1 || true
case $status in
    0 | 124) echo "the image ran with --dev: it must not carry the simulator" >&2; exit 1 ;;
esac
grep -q "build with the \`dev\` feature" <<<"$refusal" \
    || { echo "--dev was refused without saying why: $refusal" >&2; exit 1; }

t "ECS stand-in: the dev build's simulator on 127.0.0.1:$ecs_port"
cargo build --release --locked --quiet --bin ecs-gateway
access_key_id="LTAIimageSmoke$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
access_key_secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
ALIBABA_CLOUD_ACCESS_KEY_ID=$access_key_id ALIBABA_CLOUD_ACCESS_KEY_SECRET=$access_key_secret \
    target/release/ecs-gateway simulator --listen 127.0.0.1:$ecs_port >"$work/simulator.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do
    grep -q "ECS simulator listening" "$work/simulator.log" && break
    kill -0 "$sim_pid" 2>/dev/null || { cat "$work/simulator.log"; exit 1; }
    sleep 0.1
done

t "the container: authenticated StopInvocation, health, /metrics, its user, SIGTERM"
token=$(head -c 32 /dev/urandom | base64)
echo "ci sha256:$(printf %s "$token" | sha256sum | cut -d' ' -f1)" >"$work/tokens"
chmod 644 "$work/tokens"
podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
podman run -d --name "$name" --pull=never --read-only --cap-drop=ALL --network host \
    -e ECS_GATEWAY_LISTEN=$grpc -e ECS_GATEWAY_METRICS_LISTEN=$metrics \
    -e ECS_GATEWAY_HEALTH_LISTEN=$health \
    -e ECS_GATEWAY_ENDPOINT="http://127.0.0.1:$ecs_port/" \
    -e ALIBABA_CLOUD_ACCESS_KEY_ID="$access_key_id" \
    -e ALIBABA_CLOUD_ACCESS_KEY_SECRET="$access_key_secret" \
    -e ECS_GATEWAY_TLS_CERT= -e ECS_GATEWAY_TLS_KEY= -e ECS_GATEWAY_TLS_CLIENT_CA= \
    -v "$work/tokens:/etc/ecs-gateway/tokens:ro" \
    -e ECS_GATEWAY_AUTH_TOKENS_FILE=/etc/ecs-gateway/tokens \
    "$image" >/dev/null
serving=
for _ in $(seq 100); do
    # The plaintext health port serves no reflection for grpcurl to read; the gRPC port does.
    if grep -q '"SERVING"' <<<"$(grpcurl -plaintext -max-time 2 -d '{"service":""}' $grpc \
        grpc.health.v1.Health/Check 2>/dev/null || true)"; then
        serving=yes; break
    fi
    [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] || break
    sleep 0.1
done
[ -n "$serving" ] || { echo "the container never reported SERVING:" >&2; podman logs "$name" >&2; exit 1; }
unauthenticated=$(grpcurl -plaintext -max-time 5 -d '{"region_id":"cn-hangzhou","invoke_id":"t-demo0001"}' \
    $grpc ecsgateway.v1.CloudAssistantService/StopInvocation 2>&1 || true)
grep -q "Unauthenticated" <<<"$unauthenticated" \
    || { echo "a call without a token was not refused: $unauthenticated" >&2; exit 1; }
authenticated=$(grpcurl -plaintext -max-time 5 -H "authorization: Bearer $token" \
    -d '{"region_id":"cn-hangzhou","invoke_id":"t-demo0001"}' \
    $grpc ecsgateway.v1.CloudAssistantService/StopInvocation 2>&1 || true)
grep -Eq '"requestId": "[0-9A-Fa-f-]{36}"' <<<"$authenticated" \
    || { echo "the authenticated StopInvocation failed: $authenticated" >&2; podman logs "$name" >&2; exit 1; }
scrape=$(curl -fsS --max-time 2 "http://$metrics/metrics") \
    || { echo "/metrics did not answer" >&2; exit 1; }
grep -q '^grpc_server_handled_total{.*grpc_code="OK"' <<<"$scrape" \
    || { echo "/metrics does not count the call" >&2; exit 1; }
[ "$(podman top "$name" user | tail -n 1 | tr -d ' ')" = gateway ] \
    || { echo "the process does not run as the image's user: $(podman top "$name" user)" >&2; exit 1; }
podman stop -t 15 "$name" >/dev/null
[ "$(podman inspect -f '{{.State.ExitCode}}' "$name")" = 0 ] \
    || { echo "SIGTERM did not end in exit 0" >&2; podman logs "$name" >&2; exit 1; }
log=$(podman logs "$name" 2>&1)
grep -q 'server stopped' <<<"$log" \
    || { echo "no 'server stopped' line after SIGTERM" >&2; exit 1; }
for secret in "$access_key_secret" "$token"; do
    if grep -qF "$secret" <<<"$log"; then
        echo "a secret is in the container's log" >&2; exit 1
    fi
done
t "image smoke test passed: $((size / 1024 / 1024)) MiB, built in ${build_seconds}s"
