"""The Alembic history builds exactly the schema the ORM declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from control_plane.db.base import Base
from control_plane.db.partitions import include_object
from tests.conftest import Stack


async def test_migrations_match_the_models(stack: Stack) -> None:
    def diff(connection: Connection) -> list[object]:
        # Decision-log partitions (PostgreSQL) are created at run time, not declared in the ORM.
        options = {"compare_type": True, "include_object": include_object}
        context = MigrationContext.configure(connection, opts=options)
        return list(compare_metadata(context, Base.metadata))

    async with stack.db.engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == []
