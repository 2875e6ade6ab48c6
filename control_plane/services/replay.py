"""Impact replay: stored decisions re-evaluated against a policy set, as a background job;
and the publish gate that can require a clean replay of exactly the drafts being published.

A replay job is a `ReplayJob` row; the asyncio task that runs it (`ReplayRunner`, one per
process) only advances that row. Each decision's logged input (masked at source, with the
authenticated principal as the sidecar saw it) is decided again by the compiled set in
simulate mode (nothing is reserved against budgets) and its new outcome compared with the
logged one; that evaluation runs slice by slice in the Rego sandbox's workers, so a policy
too slow or too hungry for its limits fails the job (and never the control plane). A job
whose process stopped is marked failed, never left running: at shutdown,
at the next start, and on read once its heartbeat is stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import DecisionLog, Policy, PolicySettings, ReplayJob
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Conflict, Invalid, KaizenError, NotFound
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
    replay_slice,
    transition_key,
)
from policy.compile.compiler import CompileContext

log = logging.getLogger(__name__)

# Tally, evaluate and the rest of the per-decision work live in rego_tasks (they run in
# the sandbox's workers); these names stay importable from here.
__all__ = ["RISKY", "Tally", "as_logged", "evaluate", "transition_key"]
_as_logged = as_logged  # the decision-store benchmark's name for it

ACTIVE = ("queued", "running")
MAX_ACTIVE_PER_ORGANIZATION = 2
BATCH = 1000
# A running job whose heartbeat is older than this has lost its process.
STALE_AFTER = timedelta(seconds=60)


def versions_hash(versions: Mapping[str, int]) -> str:
    """Identifies a policy set: the same name -> version map always hashes the same."""
    canonical = json.dumps(dict(versions), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def risky_count(result: Mapping[str, Any] | None) -> int:
    return int((result or {}).get("risky", 0))


def _logged(row: Row[Any]) -> Logged:
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


async def _next_batch(
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
    first = await _next_batch(session, since, until, None, 1)
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
        first=_logged(first[0]) if first else None,
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


# -- the publish gate ----------------------------------------------------------------------


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


# -- running jobs --------------------------------------------------------------------------


class ReplayRunner:
    """Runs this process's replay jobs as asyncio tasks; the job rows hold all their state."""

    def __init__(self, db: Database, sandbox: RegoSandbox) -> None:
        self._db = db
        self._sandbox = sandbox
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}

    async def start(self) -> int:
        """Mark failed what a previous process left queued or running; how many."""
        query = update(ReplayJob).where(ReplayJob.status.in_(ACTIVE))
        if not self._db.is_sqlite:
            # Other replicas may be running theirs; only a silent job is orphaned. SQLite is
            # one node, so everything active there belonged to the process that stopped.
            query = query.where(ReplayJob.heartbeat_at < utcnow() - STALE_AFTER)
        async with self._db.session(SYSTEM) as session:
            result = await session.execute(
                query.values(
                    status="failed",
                    error="interrupted: the control plane restarted before the replay finished",
                    finished_at=utcnow(),
                ).execution_options(synchronize_session=False)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    def submit(self, job: ReplayJob, plan: ReplayPlan) -> None:
        task = asyncio.create_task(
            self._run(job.id, job.organization_id, plan), name=f"replay-{job.id}"
        )
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))

    async def close(self) -> None:
        """Stop every job of this process and record them as failed."""
        owned = list(self._tasks)
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if owned:
            async with self._db.session(SYSTEM) as session:
                await session.execute(
                    update(ReplayJob)
                    .where(ReplayJob.id.in_(owned), ReplayJob.status.in_(ACTIVE))
                    .values(
                        status="failed",
                        error="interrupted: the control plane shut down",
                        finished_at=utcnow(),
                    )
                    .execution_options(synchronize_session=False)
                )

    async def _run(self, job_id: uuid.UUID, organization_id: uuid.UUID, plan: ReplayPlan) -> None:
        try:
            async with self._db.session(organization_id) as session:
                job = await session.get(ReplayJob, job_id)
                if job is None or job.status != "queued":
                    return
                job.status, job.started_at = "running", utcnow()
                job.heartbeat_at = job.started_at
                since, until, limit = job.since, job.until, job.max_decisions
                tally = Tally(job.examples_per_transition)
            await self._replay(job_id, organization_id, plan, tally, since, until, limit)
        except asyncio.CancelledError:
            raise  # close() records it
        except KaizenError as exc:  # a limit of the sandbox, or the set no longer compiles
            await self._finish(job_id, organization_id, error=exc.message)
        except Exception as exc:
            log.exception("replay %s failed", job_id)
            await self._finish(job_id, organization_id, error=f"{type(exc).__name__}: {exc}")

    async def _replay(
        self,
        job_id: uuid.UUID,
        organization_id: uuid.UUID,
        plan: ReplayPlan,
        tally: Tally,
        since: datetime,
        until: datetime,
        limit: int,
    ) -> None:
        async def fetch(after: tuple[datetime, str] | None, size: int) -> Sequence[Row[Any]]:
            async with self._db.session(organization_id) as session:
                return await _next_batch(session, since, until, after, size)

        processed = 0
        # The next batch is read while this one is evaluated in a worker.
        pending: asyncio.Task[Sequence[Row[Any]]] | None = asyncio.create_task(
            fetch(None, min(BATCH, limit))
        )
        try:
            while pending is not None:
                rows = await pending
                pending = None
                if not rows:
                    break
                left = limit - processed - len(rows)
                if left > 0 and len(rows) == min(BATCH, limit - processed):
                    after = (rows[-1].time, rows[-1].decision_id)
                    pending = asyncio.create_task(fetch(after, min(BATCH, left)))
                logged = [_logged(row) for row in rows]
                offset = 0
                while offset < len(logged):
                    done, tally = await self._sandbox.run(
                        str(organization_id),
                        plan.what,
                        replay_slice,
                        plan.key,
                        plan.sources,
                        plan.context,
                        logged[offset:],
                        tally,
                    )
                    offset += done
                    if not await self._progress(job_id, organization_id, processed + offset, tally):
                        return
                processed += len(rows)
        finally:
            if pending is not None:
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
        await self._finish(job_id, organization_id, result=tally.to_dict(), processed=processed)

    async def _progress(
        self, job_id: uuid.UUID, organization_id: uuid.UUID, processed: int, tally: Tally
    ) -> bool:
        """Record progress; False when the job row is gone (nothing left to report to)."""
        async with self._db.session(organization_id) as session:
            job = await session.get(ReplayJob, job_id)
            if job is None or job.status != "running":
                return False
            job.processed, job.heartbeat_at, job.result = processed, utcnow(), tally.to_dict()
            return True

    async def _finish(
        self,
        job_id: uuid.UUID,
        organization_id: uuid.UUID,
        *,
        result: dict[str, Any] | None = None,
        processed: int | None = None,
        error: str | None = None,
    ) -> None:
        async with self._db.session(organization_id) as session:
            job = await session.get(ReplayJob, job_id)
            if job is None or job.status not in ACTIVE:
                return
            now = utcnow()
            job.finished_at = job.heartbeat_at = now
            if error is not None:
                job.status, job.error = "failed", error[:2000]
                return
            job.status, job.result = "completed", result
            if processed is not None:
                job.processed = job.total = processed
