"""Alembic migrations, run programmatically (`kaizen-studio db upgrade`; `up` runs them too)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from control_plane.db.session import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant: replicas starting together take turns instead of racing the same DDL.
_PG_MIGRATION_LOCK = 0x6B61697A656E


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(db: Database, revision: str = "head") -> None:
    config = alembic_config(db.url)

    def run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(run)
