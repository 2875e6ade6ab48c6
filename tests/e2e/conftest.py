"""Fixtures of the end-to-end tests: a real control-plane process on PostgreSQL + Redis.

Most tests share one process (tests/conftest.py `shared_control_plane`); these give a test
a process of its own, to stop, restart or configure.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PostgresDatabases, running_control_plane
from tests.e2e import sidecar_procs as procs


@pytest.fixture
async def database(postgres_databases: PostgresDatabases) -> str:
    """A throw-away PostgreSQL database of its own for this test."""
    return await postgres_databases.create(f"e2e_{secrets.token_hex(3)}")


@pytest.fixture
def control_plane(database: str, tmp_path: Path) -> Iterator[procs.ControlPlane]:
    """`kaizen-studio control-plane` on `database` and the test Redis; stop/start at will."""
    yield from running_control_plane(database, tmp_path / "cp")
