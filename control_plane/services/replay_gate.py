"""The publish gate: an organisation's setting that publishing needs a completed replay of
exactly the drafts being published without a risky change, or the publisher's acceptance
of a named replay (audited)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import PolicySettings, ReplayJob
from control_plane.errors import Conflict, Invalid
from control_plane.services import audit, policies
from control_plane.services.audit import Actor
from control_plane.services.replay import risky_count, versions_hash


async def _settings_row(session: AsyncSession) -> PolicySettings | None:
    row: PolicySettings | None = await session.scalar(select(PolicySettings))
    return row


async def get_settings(session: AsyncSession) -> PolicySettings:
    row = await _settings_row(session)
    return row or PolicySettings(require_replay_before_publish=False, updated_at=utcnow())


async def update_settings(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, *, require_replay: bool
) -> PolicySettings:
    row = await _settings_row(session)
    before = row.require_replay_before_publish if row is not None else False
    if row is None:
        row = PolicySettings(require_replay_before_publish=require_replay, updated_at=utcnow())
        session.add(row)
    else:
        row.require_replay_before_publish, row.updated_at = require_replay, utcnow()
    await session.flush()
    await audit.record(
        session,
        organization_id,
        actor,
        "policy_settings.update",
        "policy_settings",
        None,
        require_replay_before_publish={"from": before, "to": require_replay},
    )
    return row


async def publish_gate(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    *,
    accept_replay: uuid.UUID | None,
    record: bool = True,
) -> dict[str, int]:
    """The draft versions that may be published now, or a 409 saying what is missing.
    `record=False` checks without writing the audit record of an accepted replay.

    With the gate on, a completed replay of exactly these versions must show no risky
    change (allow→deny, allow→require_approval, deny→allow), unless the publisher names
    a completed replay of them in `accept_replay`, which is recorded in the audit trail.
    """
    versions = await policies.draft_versions(session)
    digest = versions_hash(versions)
    if accept_replay is not None:
        job = await session.get(ReplayJob, accept_replay)
        if job is None:
            raise Invalid("accept_replay: no such replay", details=[{"field": "accept_replay"}])
        if job.status != "completed":
            raise Conflict(
                f"replay {job.id} is {job.status}; only a completed replay can be accepted",
                details=[{"field": "accept_replay", "status": job.status}],
            )
        if job.policies_hash != digest:
            raise Conflict(
                f"replay {job.id} replayed other policy versions than the drafts; replay the "
                "drafts again",
                details=[{"field": "accept_replay", "replayed": job.policies, "drafts": versions}],
            )
        if not record:
            return versions
        await audit.record(
            session,
            organization_id,
            actor,
            "replay.accept",
            "replay",
            job.id,
            policies=versions,
            risky=risky_count(job.result),
            counts=(job.result or {}).get("counts", {}),
        )
        return versions
    settings = await _settings_row(session)
    if settings is None or not settings.require_replay_before_publish:
        return versions
    replays = list(
        await session.scalars(
            select(ReplayJob).where(
                ReplayJob.policies_hash == digest, ReplayJob.status == "completed"
            )
        )
    )
    if any(risky_count(job.result) == 0 for job in replays):
        return versions
    raise Conflict(
        "publishing requires a completed replay of exactly these drafts without allow->deny, "
        "allow->require_approval or deny->allow changes; replay them "
        "(POST /api/v1/policies/replay) or acknowledge a replay's changes with accept_replay",
        details=[
            {"field": "accept_replay", "replay_id": str(job.id), "risky": risky_count(job.result)}
            for job in replays
        ],
    )
