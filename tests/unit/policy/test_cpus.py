"""`available_cpus`: the affinity mask capped by the cgroup CPU quota, on made-up cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from policy.runtime import cpus
from policy.runtime.cpus import available_cpus


@pytest.fixture
def eight_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda _pid: set(range(8)))


def _v2(tmp_path: Path, path: str, limits: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup v2 tree with `cpu.max` written where `limits` says; this process at `path`."""
    root = tmp_path / "cgroup"
    for where, cpu_max in limits.items():
        directory = root / where.strip("/")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cpu.max").write_text(cpu_max + "\n")
    (root / path.strip("/")).mkdir(parents=True, exist_ok=True)
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text(f"0::{path}\n")
    return root, self_cgroup


@pytest.mark.usefixtures("eight_cores")
@pytest.mark.parametrize(
    ("path", "limits", "expected"),
    [
        ("/", {"/": "max 100000"}, 8),  # a container without a limit
        ("/", {"/": "200000 100000"}, 2),  # --cpus=2, cgroup namespace: the root is ours
        ("/", {"/": "150000 100000"}, 2),  # 1.5 CPUs round up
        ("/", {"/": "10000 100000"}, 1),  # a tenth of a CPU is still one worker
        ("/", {"/": "3200000 100000"}, 8),  # more quota than cores: the cores
        # No namespace: the pod's limit is on an ancestor of the container's cgroup.
        ("/kubepods/pod1/c1", {"/kubepods/pod1": "300000 100000", "/kubepods/pod1/c1": "max"}, 3),
        ("/kubepods/pod1/c1", {"/kubepods": "max 100000"}, 8),
        ("/", {}, 8),  # no cpu.max at all (the host's root cgroup)
        ("/", {"/": "garbage"}, 8),  # unreadable: no limit claimed
    ],
)
def test_cgroup_v2_quota_caps_the_affinity(
    tmp_path: Path, path: str, limits: dict[str, str], expected: int
) -> None:
    root, self_cgroup = _v2(tmp_path, path, limits)
    assert available_cpus(root, self_cgroup) == expected


@pytest.mark.usefixtures("eight_cores")
def test_cgroup_v1_quota_caps_the_affinity(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    limited = root / "cpu,cpuacct" / "docker" / "abc"
    limited.mkdir(parents=True)
    (limited / "cpu.cfs_quota_us").write_text("250000\n")
    (limited / "cpu.cfs_period_us").write_text("100000\n")
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert available_cpus(root, self_cgroup) == 3
    (limited / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no quota"
    assert available_cpus(root, self_cgroup) == 8


def test_the_affinity_mask_counts_not_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda _pid: {3})  # taskset -c 3
    assert available_cpus(tmp_path / "none", tmp_path / "none") == 1


def test_this_machine_has_at_least_one_and_no_more_than_its_cores() -> None:
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)
