"""Changing the drafts: validate and parse a source, check the set it would leave in the
sandbox, then apply or delete in a transaction that refuses if the drafts changed meanwhile."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Policy, PolicyVersion
from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.services import audit, rego_tasks
from control_plane.services.audit import Actor
from control_plane.services.policies.evaluation import describe
from control_plane.services.policies.versions import (
    PolicySource,
    draft_versions,
    get_policy,
    read_sources,
)
from control_plane.services.rego_sandbox import RegoSandbox


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def validate(
    sandbox: RegoSandbox, organization_id: uuid.UUID, source: str
) -> list[dict[str, Any]]:
    """Every problem in `source` on its own, as 422 details would list them."""
    details: list[dict[str, Any]] = await sandbox.run(
        str(organization_id), "validating the source", rego_tasks.validate, source
    )
    return details


@dataclass(frozen=True)
class Applied:
    policies: list[PolicySource]
    created: list[str]
    updated: list[str]
    unchanged: list[str]


async def parse(sandbox: RegoSandbox, organization_id: uuid.UUID, source: str) -> list[Any]:
    """The documents of `source` (parsing compiles their Rego, so in the sandbox)."""
    documents: list[Any] = await sandbox.run(
        str(organization_id), "parsing the source", rego_tasks.parse, source
    )
    if not documents:
        raise Invalid("the source holds no policy document", details=[{"field": "source"}])
    return documents


@dataclass(frozen=True)
class Drafts:
    """The drafts a change was checked against (`versions`) and the set it would leave."""

    versions: dict[str, int]
    sources: list[tuple[str, str]]


async def check(sandbox: RegoSandbox, organization_id: uuid.UUID, drafts: Drafts) -> None:
    """The drafts must still form a valid set after the change (checked in the sandbox,
    with no transaction open)."""
    await sandbox.run(
        str(organization_id),
        describe("checking", [name for name, _ in drafts.sources]),
        rego_tasks.check_set,
        drafts.sources,
    )


def _unchanged(checked: Drafts, now: dict[str, int]) -> None:
    if checked.versions != now:
        raise Conflict(
            "the drafts changed while this change was being checked; nothing was saved; try again",
            details=[{"checked": checked.versions, "drafts": now}],
        )


async def applied_drafts(session: AsyncSession, documents: list[Any]) -> Drafts:
    """The drafts with `documents` in place; a 409 if a name changes kind."""
    existing = {p.name: p for p in await session.scalars(select(Policy))}
    versions = await draft_versions(session)
    merged = dict(await read_sources(session, versions))
    for document in documents:
        current = existing.get(document.name)
        if current is not None and current.deleted_at is None and current.kind != document.kind:
            raise Conflict(
                f"policy {document.name} is a {current.kind}; delete it before reusing the "
                f"name for a {document.kind}",
                details=[{"document": document.name, "field": "kind"}],
            )
        merged[document.name] = document.text or ""
    return Drafts(versions, sorted(merged.items()))


async def apply(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    documents: list[Any],
    *,
    checked: Drafts,
) -> Applied:
    """Create or update drafts from `documents`, all or nothing, if the drafts are still
    those `checked` (`applied_drafts`, then `check`) found valid with them in place."""
    _unchanged(checked, await draft_versions(session))
    existing = {p.name: p for p in await session.scalars(select(Policy))}
    drafts = dict(await read_sources(session, checked.versions))
    incoming = {d.name: (d.kind, d.text or "") for d in documents}
    now = utcnow()
    result = Applied([], [], [], [])
    for name, (kind, text) in incoming.items():
        policy = existing.get(name)
        if policy is not None and policy.deleted_at is None and drafts.get(name) == text:
            result.policies.append(PolicySource(policy, text))
            result.unchanged.append(name)
            continue
        if policy is None:
            policy = Policy(name=name, kind=kind, latest_version=1, updated_at=now)
            session.add(policy)
            await session.flush()
            result.created.append(name)
        else:
            policy.latest_version += 1
            policy.kind, policy.deleted_at, policy.updated_at = kind, None, now
            result.updated.append(name)
        session.add(
            PolicyVersion(
                policy_id=policy.id,
                version=policy.latest_version,
                source=text,
                sha256=_sha256(text),
                created_by=actor.label,
            )
        )
        result.policies.append(PolicySource(policy, text))
        await audit.record(
            session,
            organization_id,
            actor,
            "policy.create" if name in result.created else "policy.update",
            "policy",
            policy.id,
            name=name,
            kind=kind,
            version=policy.latest_version,
            sha256=_sha256(text),
        )
    await session.flush()
    return result


async def drafts_without(session: AsyncSession, policy_id: uuid.UUID) -> Drafts:
    """The drafts as they would be without the policy."""
    policy = await get_policy(session, policy_id)
    if policy.deleted_at is not None:
        raise NotFound("no such policy")
    versions = await draft_versions(session)
    remaining = {name: v for name, v in versions.items() if name != policy.name}
    return Drafts(versions, await read_sources(session, remaining))


async def delete(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    policy_id: uuid.UUID,
    *,
    checked: Drafts,
) -> None:
    """Remove the policy from the drafts (if they are still those `checked`); the next
    publish leaves it out of the bundle."""
    policy = await get_policy(session, policy_id)
    if policy.deleted_at is not None:
        raise NotFound("no such policy")
    _unchanged(checked, await draft_versions(session))
    policy.deleted_at = policy.updated_at = utcnow()
    await audit.record(
        session, organization_id, actor, "policy.delete", "policy", policy.id, name=policy.name
    )
