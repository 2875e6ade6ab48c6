"""The storage layer, run against SQLite and PostgreSQL alike: tenancy is enforced by the
session, whatever the statement, and the audit chain detects tampering."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, func, select, text, update

from control_plane.db.models import AuditEvent, Organization, Team
from control_plane.db.session import SYSTEM, CrossTenantWrite, Database
from control_plane.services import audit
from control_plane.services.audit import Actor
from tests.conftest import Stack

ACTOR = Actor("user", "u-1", "tester@example.com", "127.0.0.1", "req-1")


async def _two_orgs(db: Database) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    a, b = uuid.uuid4(), uuid.uuid4()
    team_of_b = uuid.uuid4()
    async with db.session(SYSTEM) as session:
        session.add_all([Organization(id=a, name="A"), Organization(id=b, name="B")])
        await session.flush()
        session.add_all(
            [
                Team(organization_id=a, name="red"),
                Team(id=team_of_b, organization_id=b, name="blue"),
            ]
        )
    return a, b, team_of_b


async def test_reads_see_only_the_sessions_tenant(stack: Stack) -> None:
    a, _b, team_of_b = await _two_orgs(stack.db)
    async with stack.db.session(a) as session:
        assert [t.name for t in await session.scalars(select(Team))] == ["red"]
        assert await session.get(Team, team_of_b) is None
        assert await session.scalar(select(func.count(Team.id))) == 1
        assert await session.scalar(select(Team.id).where(Team.name == "blue")) is None
        joined = await session.execute(
            select(Team.name, Organization.name).join(
                Organization, Organization.id == Team.organization_id
            )
        )
        assert [tuple(r) for r in joined] == [("red", "A")]


async def test_bulk_update_and_delete_touch_only_the_tenant(stack: Stack) -> None:
    a, b, team_of_b = await _two_orgs(stack.db)
    async with stack.db.session(a) as session:
        await session.execute(update(Team).values(description="changed"))
        await session.execute(delete(Team).where(Team.id == team_of_b))
    async with stack.db.session(b) as session:
        team = await session.get(Team, team_of_b)
        assert team is not None
        assert team.description == ""


async def test_writes_are_stamped_or_refused(stack: Stack) -> None:
    a, b, _ = await _two_orgs(stack.db)
    async with stack.db.session(a) as session:
        team = Team(name="green")
        session.add(team)
    assert team.organization_id == a

    with pytest.raises(CrossTenantWrite):
        async with stack.db.session(a) as session:
            session.add(Team(organization_id=b, name="smuggled"))
    async with stack.db.session(b) as session:
        assert await session.scalar(select(Team.id).where(Team.name == "smuggled")) is None

    async with stack.db.session(a) as session:
        mine = await session.scalar(select(Team).where(Team.name == "green"))
        assert mine is not None
        mine.organization_id = b
        with pytest.raises(CrossTenantWrite):
            await session.flush()
        await session.rollback()


async def test_a_session_without_tenant_refuses_to_run(stack: Stack) -> None:
    async with stack.db._sessions() as session:
        with pytest.raises(RuntimeError, match="without a tenant"):
            await session.scalars(select(Team))


async def test_audit_chain_verifies_and_names_the_first_tampered_event(stack: Stack) -> None:
    a, b, _ = await _two_orgs(stack.db)
    async with stack.db.session(a) as session:
        for i in range(5):
            await audit.record(session, a, ACTOR, "team.create", "team", None, n=i)
    async with stack.db.session(b) as session:
        await audit.record(session, b, ACTOR, "team.create", "team", None, n=0)

    async with stack.db.session(a) as session:
        report = await audit.verify_chain(session, batch=2)
    assert report.valid
    assert report.events == 5

    async with stack.db.session(SYSTEM) as session:
        await session.execute(
            text(
                "UPDATE audit_events SET action = 'team.delete' "
                "WHERE organization_id = :o AND seq = 3"
            ),
            {"o": a if not stack.db.is_sqlite else a.hex},
        )
    async with stack.db.session(a) as session:
        report = await audit.verify_chain(session, batch=2)
    assert not report.valid
    assert report.first_broken_seq == 3
    assert report.reason == "content does not match its hash"

    async with stack.db.session(b) as session:
        assert (await audit.verify_chain(session)).valid


async def test_deleting_an_audit_event_breaks_the_chain(stack: Stack) -> None:
    a, _b, _ = await _two_orgs(stack.db)
    async with stack.db.session(a) as session:
        for i in range(3):
            await audit.record(session, a, ACTOR, "team.create", "team", None, n=i)
    async with stack.db.session(a) as session:
        await session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
        report = await audit.verify_chain(session)
    assert not report.valid
    assert report.first_broken_seq == 3
    assert "sequence gap" in (report.reason or "")
