"""Engine, sessions and the one place where tenancy is enforced.

Every session is opened for a tenant (an organisation id) or explicitly as `SYSTEM`
(sign-up, login, credential lookup). Reads of `TenantScoped` classes are filtered on
`organization_id` by a `do_orm_execute` hook; writes are stamped or refused in
`before_flush`. A session opened without either refuses to run ORM statements at all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from control_plane.db.base import TenantScoped


class _System:
    def __repr__(self) -> str:
        return "SYSTEM"


SYSTEM: Final = _System()
Tenant = uuid.UUID | _System


class CrossTenantWrite(RuntimeError):
    """A flush tried to write a row of another organisation: a bug, never user input."""


class TenantSession(Session):
    """Sync session class behind every AsyncSession; carries `info['tenant']`."""


@event.listens_for(TenantSession, "do_orm_execute")
def _filter_reads(state: ORMExecuteState) -> None:
    tenant = state.session.info.get("tenant")
    if tenant is None:
        raise RuntimeError("session opened without a tenant; use Database.session(tenant)")
    if tenant is SYSTEM or not (state.is_select or state.is_update or state.is_delete):
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantScoped,
            lambda cls: cls.organization_id == tenant,
            include_aliases=True,
        )
    )


@event.listens_for(TenantSession, "before_flush")
def _stamp_writes(session: Session, _context: Any, _instances: Any) -> None:
    tenant = session.info.get("tenant")
    if tenant is None:
        raise RuntimeError("session opened without a tenant; use Database.session(tenant)")
    for obj in session.new:
        if not isinstance(obj, TenantScoped):
            continue
        if obj.organization_id is None and tenant is not SYSTEM:
            obj.organization_id = tenant
        if obj.organization_id is None:
            raise CrossTenantWrite(f"{type(obj).__name__} without organization_id")
        if tenant is not SYSTEM and obj.organization_id != tenant:
            raise CrossTenantWrite(f"{type(obj).__name__} of another organisation")
    if tenant is SYSTEM:
        return
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, TenantScoped) and obj.organization_id != tenant:
            raise CrossTenantWrite(f"{type(obj).__name__} of another organisation")


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    """Real transactions on SQLite: one writer at a time, foreign keys on, WAL for readers."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    def __init__(self, url: str, *, echo: bool = False):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"echo": echo}
        if not self.is_sqlite:
            options.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine = create_async_engine(url, **options)
        if self.is_sqlite:
            _sqlite_pragmas(self.engine)
        self._sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=TenantSession
        )

    @asynccontextmanager
    async def session(self, tenant: Tenant) -> AsyncIterator[AsyncSession]:
        """A transaction for `tenant`: committed on success, rolled back on any exception."""
        async with self._sessions() as session:
            session.info["tenant"] = tenant
            async with session.begin():
                yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
