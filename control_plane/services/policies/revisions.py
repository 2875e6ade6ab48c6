"""Published bundle revisions: the current one, its budgets, the versions a revision holds."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import BundleRevision
from control_plane.errors import NotFound
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
