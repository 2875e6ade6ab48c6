"""Fixtures of the end-to-end tests: a real control-plane process on PostgreSQL + Redis.

Most tests share one process (tests/conftest.py `shared_control_plane`); `control_plane`
gives a test a process of its own, to stop, restart or configure, and the connector tests
share `vault_control_plane` (their secrets in OpenBao).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PostgresDatabases, running_control_plane
from tests.e2e import sidecar_procs as procs
from tests.e2e.connector_pod import LOCAL, VaultControlPlane
from tests.integration.test_secrets import Bao, openbao

# One OpenBao dev server for the e2e tests that keep secrets in it.
__all__ = ["openbao"]


@pytest.fixture
async def database(postgres_databases: PostgresDatabases) -> str:
    """A throw-away PostgreSQL database of its own for this test."""
    return await postgres_databases.create(f"e2e_{secrets.token_hex(3)}")


@pytest.fixture
def control_plane(database: str, tmp_path: Path) -> Iterator[procs.ControlPlane]:
    """`kaizen-studio control-plane` on `database` and the test Redis; stop/start at will."""
    yield from running_control_plane(database, tmp_path / "cp")


@pytest.fixture(scope="session")
async def vault_control_plane_database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create("e2e_vault")


@pytest.fixture(scope="session")
def vault_control_plane(
    vault_control_plane_database: str, openbao: Bao, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VaultControlPlane]:
    """One control plane with its secrets in OpenBao (the `vault` backend), the loopback
    allowed outbound (the emulators, the fake LLM) and DEBUG logs (the tests search them
    for secrets), shared by the connector tests: each signs up an organisation of its own."""
    prefix = f"e2e-{secrets.token_hex(4)}"
    vault = {"VAULT_ADDR": openbao.url, "VAULT_TOKEN": openbao.token}
    home = tmp_path_factory.mktemp("vault-cp")
    for process in running_control_plane(
        vault_control_plane_database,
        home,
        vault,
        secrets_backend="vault",
        vault_path_prefix=prefix,
        outbound_allow_cidrs=LOCAL,
        log_level="DEBUG",
    ):
        yield VaultControlPlane(process, prefix, vault)
