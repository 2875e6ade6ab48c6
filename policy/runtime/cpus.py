"""How many CPUs this process may really use: `available_cpus()`.

`os.cpu_count()` is the machine's count. A container with a CPU limit (Kubernetes'
`resources.limits.cpu`, docker's `--cpus`) or a process pinned with `taskset` gets less:
one worker per *machine* core then means dozens of workers sharing half a core, each with
its own bundle, cache and connections. This reads what the kernel enforces instead:

- the CPU affinity mask (`os.sched_getaffinity`);
- the CFS quota of this process's cgroup and each of its ancestors: cgroup v2's `cpu.max`
  (`"<quota> <period>"` or `"max <period>"`), or v1's `cpu.cfs_quota_us` /
  `cpu.cfs_period_us` (`-1`: none). A quota of 1.5 CPUs rounds up to 2.

The smallest of these, and never less than 1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["available_cpus"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def available_cpus(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> int:
    """The CPUs this process may use: its affinity, capped by any cgroup CPU quota."""
    cpus = _affinity()
    quota = _quota(root, self_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _quota(root: Path, self_cgroup: Path) -> float | None:
    """The tightest CPU quota along this process's cgroup path, in CPUs; None: unlimited."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return None
    found: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2's unified hierarchy
            found += _along(root, path, _v2_limit)
        elif "cpu" in controllers.split(","):  # cgroup v1's cpu controller
            found += _along(root / controllers, path, _v1_limit)
    return min(found) if found else None


def _along(base: Path, path: str, limit_of: Callable[[Path], float | None]) -> list[float]:
    """The limits set on `path` and on each of its ancestors below `base`."""
    limits = []
    parts = [part for part in path.split("/") if part and part != ".."]
    for depth in range(len(parts), -1, -1):
        limit = limit_of(base.joinpath(*parts[:depth]))
        if limit is not None:
            limits.append(limit)
    return limits


def _v2_limit(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return _ratio(quota, period)


def _v1_limit(directory: Path) -> float | None:
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        share = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return share if share > 0 else None  # v1's -1: no quota
