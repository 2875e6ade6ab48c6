"""Impact replay jobs: planning, probing, storing and reading them.

A replay job is a `ReplayJob` row; the asyncio task that runs it (`ReplayRunner` in
`replay_runner.py`, one per process) only advances that row. Each decision's logged input
(masked at source, with the authenticated principal as the sidecar saw it) is decided again
by the compiled set in simulate mode (nothing is reserved against budgets) and its new
outcome compared with the logged one; that evaluation runs slice by slice in the Rego
sandbox's workers, so a policy too slow or too hungry for its limits fails the job (and
never the control plane). A job whose process stopped is marked failed, never left
running: at shutdown, at the next start, and on read once its heartbeat is stale. The
publish gate that can require a clean replay of the drafts is `replay_gate.py`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import DecisionLog, Policy, ReplayJob
from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.services import audit, policies
from control_plane.services.audit import Actor
from control_plane.services.keys import KeyRing
from control_plane.services.pagination import paginate
from control_plane.services.rego_sandbox import RegoSandbox
from control_plane.services.rego_tasks import (
    RISKY,
    Logged,
    Tally,
    as_logged,
    evaluate,
    replay_probe,
    transition_key,
)
from policy.compile.compiler import CompileContext

# Tally, evaluate and the rest of the per-decision work live in rego_tasks (they run in
# the sandbox's workers); these names stay importable from here.
__all__ = ["RISKY", "Tally", "as_logged", "evaluate", "transition_key"]
_as_logged = as_logged  # the decision-store benchmark's name for it

ACTIVE = ("queued", "running")
MAX_ACTIVE_PER_ORGANIZATION = 2
# A running job whose heartbeat is older than this has lost its process.
STALE_AFTER = timedelta(seconds=60)


def versions_hash(versions: Mapping[str, int]) -> str:
    """Identifies a policy set: the same name -> version map always hashes the same."""
    canonical = json.dumps(dict(versions), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def risky_count(result: Mapping[str, Any] | None) -> int:
    return int((result or {}).get("risky", 0))


def logged(row: Row[Any]) -> Logged:
    return Logged(row.decision_id, row.time, row.outcome, row.input, row.result)


@dataclass(frozen=True)
class ReplayPlan:
    """What a job replays: the sources and context a worker compiles (once per worker,
    cached under `key`), how refusals name it, and the job it becomes."""

    key: str
    sources: list[tuple[str, str]]
    context: CompileContext
    what: str
    policy_id: uuid.UUID | None
    draft: bool
    versions: dict[str, int]
    since: datetime
    until: datetime
    limit: int
    examples: int
    total: int
    first: Logged | None


# -- reading stored decisions --------------------------------------------------------------


def _window(since: datetime, until: datetime) -> Any:
    return and_(DecisionLog.time >= since, DecisionLog.time < until)


async def _count_window(session: AsyncSession, since: datetime, until: datetime, cap: int) -> int:
    capped = select(DecisionLog.decision_id).where(_window(since, until)).limit(cap).subquery()
    return int(await session.scalar(select(func.count()).select_from(capped)) or 0)


async def next_batch(
    session: AsyncSession,
    since: datetime,
    until: datetime,
    after: tuple[datetime, str] | None,
    size: int,
) -> Sequence[Row[Any]]:
    """The next `size` decisions of the window, newest first (keyset on time, decision id,
    unique per organisation and the order of the store's index)."""
    query = select(
        DecisionLog.decision_id,
        DecisionLog.time,
        DecisionLog.outcome,
        DecisionLog.input,
        DecisionLog.result,
    ).where(_window(since, until))
    if after is not None:
        last_time, last_id = after
        query = query.where(
            or_(
                DecisionLog.time < last_time,
                and_(DecisionLog.time == last_time, DecisionLog.decision_id < last_id),
            )
        )
    query = query.order_by(DecisionLog.time.desc(), DecisionLog.decision_id.desc()).limit(size)
    return (await session.execute(query)).all()


# -- starting and reading jobs -------------------------------------------------------------


async def _versions(
    session: AsyncSession, policy_id: uuid.UUID | None, *, draft: bool
) -> dict[str, int]:
    if policy_id is None:
        return await policies.selected_versions(session, draft)
    policy = await session.get(Policy, policy_id)
    if policy is None:
        raise NotFound("no such policy")
    if not draft:
        raise Invalid(
            "draft: a policy's replay is of its draft; replay the whole published set with "
            "POST /api/v1/policies/replay",
            details=[{"field": "draft"}],
        )
    current = await policies.current_revision(session)
    versions = dict(current.policies) if current is not None else {}
    if policy.deleted_at is None:
        versions[policy.name] = policy.latest_version
    else:
        versions.pop(policy.name, None)
    return versions


async def _check_active(session: AsyncSession) -> None:
    active = await session.scalar(
        select(func.count()).select_from(ReplayJob).where(ReplayJob.status.in_(ACTIVE))
    )
    if (active or 0) >= MAX_ACTIVE_PER_ORGANIZATION:
        raise Conflict(f"{active} replays are already queued or running; wait for one to finish")


async def plan(
    session: AsyncSession,
    organization_id: uuid.UUID,
    keys: KeyRing,
    *,
    policy_id: uuid.UUID | None,
    since: datetime,
    until: datetime | None,
    draft: bool,
    limit: int,
    examples: int,
) -> ReplayPlan:
    """What a replay would run, read in a short transaction; `probe` it, then `create`."""
    until = until or utcnow()
    if since >= until:
        raise Invalid("since must be before until", details=[{"field": "until"}])
    versions = await _versions(session, policy_id, draft=draft)
    total = await _count_window(session, since, until, limit)
    if total == 0:
        raise Invalid(
            f"no stored decisions between {since.isoformat()} and {until.isoformat()}",
            details=[{"field": "since"}, {"field": "until"}],
        )
    await _check_active(session)
    sources = await policies.read_sources(session, versions)
    context = await policies.compile_context(session, organization_id, keys)
    first = await next_batch(session, since, until, None, 1)
    return ReplayPlan(
        key=uuid.uuid4().hex,
        sources=sources,
        context=context,
        what=policies.describe("replaying", sorted(versions)),
        policy_id=policy_id,
        draft=draft,
        versions=versions,
        since=since,
        until=until,
        limit=limit,
        examples=examples,
        total=total,
        first=logged(first[0]) if first else None,
    )


async def probe(sandbox: RegoSandbox, organization_id: uuid.UUID, plan: ReplayPlan) -> None:
    """Compile the set and decide the window's newest decision again in the sandbox, with
    no transaction open: a set that cannot decide one stored request within the limits is
    refused (422) before any job exists."""
    await sandbox.run(
        str(organization_id),
        plan.what,
        replay_probe,
        plan.key,
        plan.sources,
        plan.context,
        plan.first,
    )


async def create(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, plan: ReplayPlan
) -> ReplayJob:
    """The queued job of a probed plan; the caller hands both to the runner."""
    await _check_active(session)  # again: others may have started meanwhile
    now = utcnow()
    job = ReplayJob(
        status="queued",
        policy_id=plan.policy_id,
        draft=plan.draft,
        policies=plan.versions,
        policies_hash=versions_hash(plan.versions),
        since=plan.since,
        until=plan.until,
        max_decisions=plan.limit,
        examples_per_transition=plan.examples,
        total=plan.total,
        processed=0,
        created_by=actor.label,
        heartbeat_at=now,
    )
    session.add(job)
    await session.flush()
    await audit.record(
        session,
        organization_id,
        actor,
        "replay.create",
        "replay",
        job.id,
        policy_id=str(plan.policy_id) if plan.policy_id else None,
        policies=plan.versions,
        since=plan.since.isoformat(),
        until=plan.until.isoformat(),
        limit=plan.limit,
        total=plan.total,
    )
    return job


async def _fail_stale(session: AsyncSession) -> None:
    await session.execute(
        update(ReplayJob)
        .where(ReplayJob.status.in_(ACTIVE), ReplayJob.heartbeat_at < utcnow() - STALE_AFTER)
        .values(
            status="failed",
            error="interrupted: the process running the replay stopped",
            finished_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )


async def get(session: AsyncSession, replay_id: uuid.UUID) -> ReplayJob:
    await _fail_stale(session)
    job = await session.get(ReplayJob, replay_id, populate_existing=True)
    if job is None:
        raise NotFound("no such replay")
    return job


async def list_jobs(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[ReplayJob], str | None]:
    await _fail_stale(session)
    rows, next_cursor = await paginate(session, select(ReplayJob), ReplayJob, cursor, limit)
    return list(rows), next_cursor
