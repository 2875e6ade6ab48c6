#!/usr/bin/env bash
# `make lock`: re-resolve requirements.lock from pyproject.toml's ranges (runtime + the dev
# extra, and the build backend and pip that `make` installs with), every file hash-pinned,
# for CPython 3.11 on x86_64 Linux (glibc 2.36, Debian 12: our machines). uv resolves; it
# runs from its own venv under .cache/ and is not a dependency of the project. Each entry's
# `# via` lines say what it is locked for (tests/unit/test_lock.py reads them: nothing stays
# locked that pyproject.toml no longer asks for).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
TOOLS=.cache/lock-tools
if [ ! -x "$TOOLS/bin/uv" ]; then
  echo "lock: installing uv $UV_VERSION into $TOOLS (first run)"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet "uv==$UV_VERSION"
fi
# The build backend and pip are not dependencies of the project, but `make` installs them
# from the lock too (pip first, then the project with --no-build-isolation).
printf 'pip==26.3\nsetuptools==80.9.0\n' |
  "$TOOLS/bin/uv" pip compile pyproject.toml - --extra dev --generate-hashes \
    --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
    --no-emit-package kaizen-studio --custom-compile-command "make lock" \
    "$@" -o requirements.lock
echo "lock: requirements.lock written ($(grep -c '^[A-Za-z]' requirements.lock) packages)"
