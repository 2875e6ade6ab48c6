"""A throw-away PostgreSQL database for one benchmark run, on the tests' server
(KAIZEN_TEST_POSTGRES_URL), dropped afterwards whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg

POSTGRES_URL = os.environ.get(
    "KAIZEN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
_SERVER = POSTGRES_URL.rsplit("/", 1)[0]


@dataclass(frozen=True)
class ThrowawayDatabase:
    name: str

    @property
    def url(self) -> str:
        """For the control plane (`KAIZEN_DATABASE_URL`, SQLAlchemy + asyncpg)."""
        return f"{_SERVER}/{self.name}"

    @property
    def dsn(self) -> str:
        """For asyncpg directly."""
        return self.url.replace("postgresql+asyncpg", "postgresql")


async def _admin(statement: str) -> None:
    admin = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@contextlib.contextmanager
def throwaway_database() -> Iterator[ThrowawayDatabase]:
    database = ThrowawayDatabase(f"kaizen_bench_{secrets.token_hex(4)}")
    asyncio.run(_admin(f'CREATE DATABASE "{database.name}"'))
    try:
        yield database
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)'))
