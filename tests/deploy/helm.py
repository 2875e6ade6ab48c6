"""Render the Helm chart with a real `helm` (scripts/fetch-helm.sh) for the deploy tests."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "kaizen-studio"
VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))


@functools.cache
def helm() -> str:
    done = subprocess.run(
        [str(ROOT / "scripts" / "fetch-helm.sh")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"scripts/fetch-helm.sh failed: {done.stderr}"
    return done.stdout.strip().splitlines()[-1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, check=False)


def render(values: Path | None, *sets: str) -> list[dict[str, Any]]:
    """Every object `helm template` renders (namespace `kaizen`, release `kz`)."""
    args = ["template", "kz", str(CHART), "--namespace", "kaizen"]
    if values is not None:
        args += ["-f", str(values)]
    for item in sets:
        args += ["--set", item]
    done = run(*args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]
