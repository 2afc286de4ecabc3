#!/usr/bin/env bash
# Runs the whole test suite. Installs the external tools the tests drive (grpcurl 1.8.6, Alibaba's
# Python SDKs for the interop check and its credential chain for the oracle, grpcio for the
# metadata-limit check) when they are missing, so a fresh machine needs nothing else than Rust and
# Python. The Prometheus test needs Debian's `prometheus` (apt install prometheus); without it, it
# says so and skips, except under CI.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! command -v grpcurl >/dev/null 2>&1 \
    || ! "$PYTHON" -c "import aliyunsdkcore, aliyunsdkecs, alibabacloud_ecs20140526, alibabacloud_credentials, grpc" >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -r scripts/test-requirements.txt
    hash -r
fi

cargo test --locked "$@"
