"""Published bundle revisions: the current one, its budgets, the versions a revision holds,
and the revision an `Idempotency-Key` already released."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import AuditEvent, BundleRevision
from control_plane.errors import Conflict, NotFound
from control_plane.services import rego_tasks
from control_plane.services.pagination import paginate
from control_plane.services.policies.versions import read_sources
from policy.documents.models import Budget


async def current_revision(session: AsyncSession) -> BundleRevision | None:
    row: BundleRevision | None = await session.scalar(
        select(BundleRevision).order_by(BundleRevision.revision.desc()).limit(1)
    )
    return row


async def published_budgets(session: AsyncSession) -> tuple[int | None, list[Budget]]:
    """The budgets of the current bundle revision (what sidecars enforce), by name."""
    revision = await current_revision(session)
    if revision is None:
        return None, []
    sources = await read_sources(session, revision.policies)
    budgets = rego_tasks.policy_set(sources).budgets
    return revision.revision, sorted(budgets, key=lambda budget: budget.name)


async def revision_versions(session: AsyncSession, revision: int) -> dict[str, int]:
    target = await session.scalar(select(BundleRevision).where(BundleRevision.revision == revision))
    if target is None:
        raise NotFound(f"no bundle revision {revision}")
    return dict(target.policies)


async def list_revisions(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[BundleRevision], str | None]:
    rows, next_cursor = await paginate(
        session, select(BundleRevision), BundleRevision, cursor, limit
    )
    return list(rows), next_cursor


IDEMPOTENCY_WINDOW = timedelta(hours=24)  # how long a publish/rollback key is remembered


async def released_under_key(
    session: AsyncSession, organization_id: uuid.UUID, key: str, *, reason: str
) -> BundleRevision | None:
    """The revision a publish or rollback with this `Idempotency-Key` stored in the last 24 h.

    The key is kept in the release's audit event, written in the transaction that stores
    the revision: either both are there or neither, so a client (or a balancer) that lost
    the answer to a dying replica can send the request again and get the first revision,
    never a second one. A key used for the other kind of release is a 409."""
    event = await session.scalar(
        select(AuditEvent)
        .where(
            AuditEvent.organization_id == organization_id,
            AuditEvent.action.in_(("bundle.publish", "bundle.rollback")),
            AuditEvent.summary["idempotency_key"].as_string() == key,
            AuditEvent.created_at >= utcnow() - IDEMPOTENCY_WINDOW,
        )
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    if event is None:
        return None
    if event.action != f"bundle.{reason}":
        raise Conflict(
            f"Idempotency-Key was already used for a {event.action.removeprefix('bundle.')} "
            f"(revision {event.summary.get('revision')}); use a new key for this {reason}"
        )
    row: BundleRevision | None = await session.scalar(
        select(BundleRevision).where(BundleRevision.revision == int(event.summary["revision"]))
    )
    return row
