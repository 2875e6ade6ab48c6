"""Fixtures of the end-to-end tests: a real control-plane process on PostgreSQL + Redis."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REDIS_PREFIX, REDIS_URL, PostgresDatabases
from tests.e2e import sidecar_procs as procs


@pytest.fixture
async def database(postgres_databases: PostgresDatabases) -> str:
    """A throw-away PostgreSQL database of its own for this test."""
    return await postgres_databases.create(f"e2e_{secrets.token_hex(3)}")


@pytest.fixture
def control_plane(database: str, tmp_path: Path) -> Iterator[procs.ControlPlane]:
    """`kaizen-studio control-plane` on `database` and the test Redis; stop/start at will."""
    cp = procs.ControlPlane.configured(
        tmp_path / "cp",
        database_url=database,
        redis_url=REDIS_URL,
        redis_prefix=f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()
