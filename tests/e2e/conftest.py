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


def _running_control_plane(
    database: str, home: Path, **settings: str
) -> Iterator[procs.ControlPlane]:
    cp = procs.ControlPlane.configured(
        home,
        database_url=database,
        redis_url=REDIS_URL,
        redis_prefix=f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        **settings,
    )
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def control_plane(database: str, tmp_path: Path) -> Iterator[procs.ControlPlane]:
    """`kaizen-studio control-plane` on `database` and the test Redis; stop/start at will."""
    yield from _running_control_plane(database, tmp_path / "cp")


@pytest.fixture(scope="module")
async def module_database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create(f"e2e_{secrets.token_hex(3)}")


@pytest.fixture(scope="module")
def module_control_plane(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[procs.ControlPlane]:
    """One control plane for a module whose tests neither stop it nor need it empty: each
    signs up an organisation of its own (a unique email), so no test sees another's data.
    Sign-ups and logins all come from 127.0.0.1: the per-address limit is raised, as the
    studio tests do (tests/integration/test_auth.py tests the limit)."""
    home = tmp_path_factory.mktemp("cp")
    yield from _running_control_plane(module_database, home, login_attempts_per_window="1000")
