#!/usr/bin/env bash
# Render the kustomize base (kubectl kustomize) and validate every object against the
# Kubernetes API's JSON schemas (kubernetes-validate, strict: unknown fields are errors).
# Used by .ci/run and tests/test_deploy_kubernetes.py. Usage: validate-k8s.sh [kustomize dir]
set -euo pipefail
cd "$(dirname "$0")/.."
validate="${KUBERNETES_VALIDATE:-.venv/bin/kubernetes-validate}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
base="${1:-deploy/kubernetes}"
kubectl kustomize "$base" >"$out/rendered.yaml"
"$validate" --strict --quiet "$out/rendered.yaml"
echo "$base: $(grep -c '^kind: ' "$out/rendered.yaml") objects rendered and valid"
