#!/usr/bin/env bash
# `make`'s last install step: uninstall from the venv ($1, default .venv) every distribution
# requirements.lock does not hold (the project itself, installed editable, stays). A package
# left over from an older lock would hide a missing dependency that a fresh machine shows.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
canonical() { sed -E 's/[-_.]+/-/g' | tr '[:upper:]' '[:lower:]' | sort -u; }
locked=$(grep -oE '^[A-Za-z0-9][A-Za-z0-9._-]*==' requirements.lock | sed 's/==$//' | canonical)
installed=$("$VENV/bin/python" -m pip list --format=freeze --exclude-editable | cut -d= -f1 | canonical)
extra=$(comm -23 <(printf '%s\n' "$installed") <(printf '%s\n' "$locked") | grep . || true)
if [ -n "$extra" ]; then
  echo "make: uninstalling what requirements.lock does not hold:" $extra
  # shellcheck disable=SC2086 # one argument per name
  "$VENV/bin/python" -m pip uninstall --yes --quiet $extra
fi
