"""How many workers a sidecar starts when `KAIZEN_SIDECAR_WORKERS` is not set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from authz_sidecar.settings import SidecarSettings


def test_a_sidecar_runs_a_worker_per_available_cpu_not_per_machine_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("authz_sidecar.settings.available_cpus", lambda: 3)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    with_redis = SidecarSettings(home=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    assert with_redis.workers == 3
    assert SidecarSettings(home=tmp_path).workers == 1  # no shared Redis: one worker
    named = SidecarSettings(home=tmp_path, redis_url="redis://x:6379/0", sidecar_workers=5)
    assert named.workers == 5
