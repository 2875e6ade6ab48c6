"""The Alembic history builds exactly the schema the ORM declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from control_plane.db.base import Base
from tests.conftest import Stack


async def test_migrations_match_the_models(stack: Stack) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with stack.db.engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == []
