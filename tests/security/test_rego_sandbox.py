"""The Rego sandbox's own boundaries: what a worker sends back is data, never code; and
no worker outlives the control plane that started it.

A worker runs tenant Rego through C++ (rego-cpp); should a tenant ever subvert one, its
replies must not become code in the control plane. Replies are unpickled against an
allowlist of our own data classes, and capped in size. These tests drive real worker
processes through `RegoSandbox.run` and the app's lifespan.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from control_plane.app import create_app
from control_plane.services import rego_tasks
from control_plane.services.rego_sandbox import EvaluationLimit, RegoSandbox
from tests.conftest import make_settings


@pytest.fixture
async def sandbox() -> AsyncIterator[RegoSandbox]:
    pool = RegoSandbox(
        workers=1, timeout_seconds=30, memory_mb=256, per_organization=1, queue_per_organization=1
    )
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


async def test_worker_reply_naming_a_foreign_class_is_refused(sandbox: RegoSandbox) -> None:
    # Stands in for a subverted worker: its reply names a class outside our data (a pickle
    # naming os.system would be refused the same way, before anything is called).
    with pytest.raises(EvaluationLimit) as refused:
        await sandbox.run("org", "probing", pathlib.Path, "/")
    assert "the evaluator's reply was refused" in refused.value.message
    assert "pathlib" in refused.value.message
    assert sandbox.replaced == 1  # that worker is never trusted again
    # The replacement serves ordinary work.
    assert await sandbox.run("org", "validating", rego_tasks.validate, "") == []


async def test_oversized_worker_reply_is_refused(sandbox: RegoSandbox) -> None:
    with pytest.raises(EvaluationLimit) as refused:
        await sandbox.run("org", "probing", bytes, 40 * 1024 * 1024)
    assert "larger than 32 MB" in refused.value.message
    assert sandbox.replaced == 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"  # a zombie has stopped
    except FileNotFoundError:
        return False


async def test_app_shutdown_leaves_no_worker_running(tmp_path: pathlib.Path) -> None:
    app = create_app(make_settings(tmp_path, rego_workers=2))
    async with app.router.lifespan_context(app):
        pids = app.state.rego.pids
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
    assert not [pid for pid in pids if _alive(pid)]


SPINNING_CONTROL_PLANE = """
import asyncio, sys
from control_plane.services import rego_tasks
from control_plane.services.rego_sandbox import RegoSandbox
from policy.compile.compiler import CompileContext
from tests.security.test_rego_exhaustion import INPUT, ROLES, SPIN

async def main():
    sandbox = RegoSandbox(
        workers=1, timeout_seconds=600, memory_mb=256, per_organization=1, queue_per_organization=0
    )
    await sandbox.start()
    while sandbox.idle < 1:
        await asyncio.sleep(0.05)
    print(*sandbox.pids, flush=True)
    sources = [("agent-roles", ROLES), ("spin", SPIN)]
    await sandbox.run("org", "spinning", rego_tasks.simulate, sources, CompileContext("org"), INPUT)

asyncio.run(main())
"""


async def test_killed_control_plane_leaves_no_worker_spinning() -> None:
    """A control plane killed (SIGKILL, OOM killer) mid-evaluation must not leave its worker
    spinning on a tenant's rule with nobody left to stop it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SPINNING_CONTROL_PLANE, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    pids = [int(pid) for pid in (await process.stdout.readline()).split()]
    assert pids, "the stand-in control plane did not start its worker"
    try:
        await asyncio.sleep(0.5)  # the task reaches the worker, which starts spinning
        process.kill()  # reaped below: a surviving worker would hold its stdout open
        for _ in range(300):  # the kernel delivers the worker's signal at once; allow 30 s
            if not any(_alive(pid) for pid in pids):
                break
            await asyncio.sleep(0.1)
        assert not [pid for pid in pids if _alive(pid)], "a worker outlived its control plane"
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        await process.wait()
