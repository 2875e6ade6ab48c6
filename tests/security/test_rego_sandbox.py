"""The Rego sandbox's own boundary: what a worker sends back is data, never code.

A worker runs tenant Rego through C++ (rego-cpp); should a tenant ever subvert one, its
replies must not become code in the control plane. Replies are unpickled against an
allowlist of our own data classes, and capped in size. These tests drive a real worker
process through `RegoSandbox.run`.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from control_plane.services import rego_tasks
from control_plane.services.rego_sandbox import EvaluationLimit, RegoSandbox


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
