"""Two writers of one organisation never deadlock on its row (PostgreSQL).

Appending to the audit chain, publishing and the plan quotas serialise on the
organisation's row. Every insert of a row that references the organisation takes a
KEY SHARE lock on that row (the foreign-key check). A `FOR UPDATE` conflicts with KEY
SHARE, so two transactions that each inserted such a row and then appended an audit
event waited for each other, and PostgreSQL ended one (seen in CI as a policy draft
answered 503 while an approval was recorded). `FOR NO KEY UPDATE` serialises the
appenders the same way and does not conflict with the foreign-key checks.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from control_plane.db.locks import lock_organization
from control_plane.db.models import Team
from control_plane.services import audit
from tests.conftest import Stack, _reset, signup

SYSTEM_ACTOR = audit.Actor("system", None, "test", None, None)


async def _insert_then_lock(
    stack: Stack, organization: uuid.UUID, name: str, both_inserted: asyncio.Barrier, lock: str
) -> None:
    async with stack.db.session(organization) as session:
        session.add(Team(id=uuid.uuid4(), organization_id=organization, name=name))
        await session.flush()  # the foreign-key check: KEY SHARE on the organisation's row
        await both_inserted.wait()
        if lock == "audit":
            await audit.record(session, organization, SYSTEM_ACTOR, "team.created", "team")
        else:
            await lock_organization(session, organization)


@pytest.fixture
async def stack(production_stack: Stack) -> Stack:
    """PostgreSQL only: SQLite has one writer at a time, so no row locks to order."""
    await _reset(production_stack)
    return production_stack


@pytest.mark.parametrize("lock", ["audit", "quotas"])
async def test_two_writers_of_one_organisation_do_not_deadlock(
    client: httpx.AsyncClient, stack: Stack, lock: str
) -> None:
    organization = uuid.UUID((await signup(client)).organization_id)
    both_inserted = asyncio.Barrier(2)
    async with asyncio.timeout(30):
        await asyncio.gather(
            _insert_then_lock(stack, organization, f"a-{lock}", both_inserted, lock),
            _insert_then_lock(stack, organization, f"b-{lock}", both_inserted, lock),
        )
