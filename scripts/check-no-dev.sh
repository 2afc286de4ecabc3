#!/usr/bin/env bash
# Checks a gateway binary built without the `dev` feature (as the Dockerfile builds it): `--dev`
# and the `simulator` subcommand are refused with a line that names the feature, and neither the
# simulator's demo AccessKey nor its secret is anywhere in the binary. Used by .ci/run.
# Usage: scripts/check-no-dev.sh target/release/ecs-gateway
set -euo pipefail
bin=${1:?usage: $0 BINARY}
fail() { echo "check-no-dev: $*" >&2; exit 1; }

for args in "--dev" "simulator"; do
    if out=$(ECS_GATEWAY_LISTEN=127.0.0.1:0 timeout 10 "$bin" $args 2>&1); then
        fail "\`$bin $args\` started; a build without the dev feature must refuse it"
    fi
    grep -q "build with the \`dev\` feature" <<<"$out" \
        || fail "\`$bin $args\` failed without saying how to get dev tooling: $out"
done
for secret in LTAIdemoGatewayKey demo-secret-not-for-production; do
    if grep -aq "$secret" "$bin"; then
        fail "the demo credential ($secret) is in $bin"
    fi
done
echo "check-no-dev: --dev and simulator refused, no demo credential in $bin"
