"""Migration 0017: organisations that predate plans land on Enterprise with no overrides
(no limit at all: nothing they run is refused after the upgrade), on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from control_plane.db.migrate import upgrade
from control_plane.db.session import SYSTEM, Database
from tests.conftest import PostgresDatabases


async def _existing_organisations_land_on_enterprise(url: str) -> None:
    db = Database(url)
    try:
        await upgrade(db, "0016")
        org = uuid.uuid4()
        async with db.session(SYSTEM) as session:
            await session.execute(
                text("INSERT INTO organizations (id, name, created_at) VALUES (:id, 'Old', :at)"),
                {"id": org.hex if db.is_sqlite else org, "at": datetime.now(UTC)},
            )
        await upgrade(db)
        async with db.session(SYSTEM) as session:
            rows = (
                await session.execute(text("SELECT plan, overrides FROM organization_plans"))
            ).all()
        assert [(plan, overrides) for plan, overrides in rows] in (
            [("enterprise", {})],
            [("enterprise", "{}")],
        )
    finally:
        await db.dispose()


async def test_existing_organisations_land_on_enterprise_on_sqlite(tmp_path: Path) -> None:
    await _existing_organisations_land_on_enterprise(f"sqlite+aiosqlite:///{tmp_path}/old.db")


async def test_existing_organisations_land_on_enterprise_on_postgresql(
    postgres_databases: PostgresDatabases,
) -> None:
    await _existing_organisations_land_on_enterprise(await postgres_databases.create("plans_mig"))
