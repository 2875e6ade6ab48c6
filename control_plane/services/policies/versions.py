"""Policies and their versions as stored: lookups, listings, diffs, the sources of a version map."""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Policy, PolicyVersion
from control_plane.errors import NotFound
from control_plane.services.pagination import paginate


@dataclass(frozen=True)
class PolicySource:
    """A policy with its latest version's source (None once the policy is deleted)."""

    policy: Policy
    source: str | None


def status(policy: Policy) -> str:
    if policy.deleted_at is not None:
        return "deleted"
    return "published" if policy.published_version == policy.latest_version else "draft"


async def _policy(session: AsyncSession, policy_id: uuid.UUID) -> Policy:
    policy = await session.get(Policy, policy_id)
    if policy is None:
        raise NotFound("no such policy")
    return policy


async def _version(session: AsyncSession, policy: Policy, version: int) -> PolicyVersion:
    row = await session.scalar(
        select(PolicyVersion).where(
            PolicyVersion.policy_id == policy.id, PolicyVersion.version == version
        )
    )
    if row is None:
        raise NotFound(f"policy {policy.name} has no version {version}")
    return row


async def latest_source(session: AsyncSession, policy: Policy) -> str | None:
    if policy.deleted_at is not None:
        return None
    return (await _version(session, policy, policy.latest_version)).source


async def list_policies(
    session: AsyncSession, cursor: str | None, limit: int, *, include_deleted: bool = False
) -> tuple[list[PolicySource], str | None]:
    query = select(Policy)
    if not include_deleted:
        query = query.where(Policy.deleted_at.is_(None))
    rows, next_cursor = await paginate(session, query, Policy, cursor, limit)
    return [PolicySource(p, await latest_source(session, p)) for p in rows], next_cursor


async def get_policy(session: AsyncSession, policy_id: uuid.UUID) -> Policy:
    return await _policy(session, policy_id)


async def get_policy_source(session: AsyncSession, policy_id: uuid.UUID) -> PolicySource:
    policy = await _policy(session, policy_id)
    return PolicySource(policy, await latest_source(session, policy))


async def list_versions(
    session: AsyncSession, policy_id: uuid.UUID
) -> tuple[Policy, list[PolicyVersion]]:
    policy = await _policy(session, policy_id)
    rows = await session.scalars(
        select(PolicyVersion)
        .where(PolicyVersion.policy_id == policy.id)
        .order_by(PolicyVersion.version.desc())
    )
    return policy, list(rows)


async def get_version(
    session: AsyncSession, policy_id: uuid.UUID, version: int
) -> tuple[Policy, PolicyVersion]:
    policy = await _policy(session, policy_id)
    return policy, await _version(session, policy, version)


async def diff(
    session: AsyncSession, policy_id: uuid.UUID, from_version: int, to_version: int
) -> str:
    policy = await _policy(session, policy_id)
    old = await _version(session, policy, from_version)
    new = await _version(session, policy, to_version)
    return "".join(
        difflib.unified_diff(
            old.source.splitlines(keepends=True),
            new.source.splitlines(keepends=True),
            fromfile=f"{policy.name}@{from_version}",
            tofile=f"{policy.name}@{to_version}",
        )
    )


async def read_sources(session: AsyncSession, versions: Mapping[str, int]) -> list[tuple[str, str]]:
    """`(name, text)` for the given name -> version map, in name order."""
    if not versions:
        return []
    rows = await session.execute(
        select(Policy.name, PolicyVersion.version, PolicyVersion.source)
        .join(PolicyVersion, PolicyVersion.policy_id == Policy.id)
        .where(Policy.name.in_(list(versions)))
    )
    found = {(name, version): source for name, version, source in rows}
    missing = [n for n, v in versions.items() if (n, v) not in found]
    if missing:
        raise NotFound(f"policy versions no longer exist: {', '.join(sorted(missing))}")
    return [(name, found[(name, versions[name])]) for name in sorted(versions)]


async def draft_versions(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Policy.name, Policy.latest_version).where(Policy.deleted_at.is_(None))
    )
    return {name: version for name, version in rows}
