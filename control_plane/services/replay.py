"""Impact replay: stored decisions re-evaluated against a policy set, as a background job;
and the publish gate that can require a clean replay of exactly the drafts being published.

A replay job is a `ReplayJob` row; the asyncio task that runs it (`ReplayRunner`, one per
process) only advances that row. Each decision's logged input (masked at source, with the
authenticated principal as the sidecar saw it) is decided again by the compiled set in
simulate mode (nothing is reserved against budgets) and its new outcome compared with the
logged one. A job whose process stopped is marked failed, never left running: at shutdown,
at the next start, and on read once its heartbeat is stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import DecisionLog, Policy, PolicySettings, ReplayJob
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.services import audit, policies
from control_plane.services.audit import Actor
from control_plane.services.keys import KeyRing
from control_plane.services.pagination import paginate
from policy.compiler import CompileContext, CompiledPolicy
from policy.engine import DecisionEngine

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
RISKY = frozenset({("allow", "deny"), ("allow", "require_approval"), ("deny", "allow")})
MAX_ACTIVE_PER_ORGANIZATION = 2
BATCH = 1000
# Progress (and the heartbeat) is written at least this often while a job runs.
SLICE_SECONDS = 1.0
# A running job whose heartbeat is older than this has lost its process.
STALE_AFTER = timedelta(seconds=60)


def versions_hash(versions: Mapping[str, int]) -> str:
    """Identifies a policy set: the same name -> version map always hashes the same."""
    canonical = json.dumps(dict(versions), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def transition_key(old: str, new: str) -> str:
    return f"{old}->{new}"


def risky_count(result: Mapping[str, Any] | None) -> int:
    return int((result or {}).get("risky", 0))


# -- tallying (runs in a worker thread) ----------------------------------------------------


@dataclass
class Tally:
    examples_per_transition: int
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        total = sum(self.counts.values())
        unchanged = sum(n for (old, new), n in self.counts.items() if old == new)
        changed = sorted(
            ((pair, n) for pair, n in self.counts.items() if pair[0] != pair[1]),
            key=lambda item: (-item[1], item[0]),
        )
        return {
            "total": total,
            "changed": total - unchanged,
            "unchanged": unchanged,
            "risky": sum(n for pair, n in self.counts.items() if pair in RISKY),
            "counts": {transition_key(*pair): n for pair, n in sorted(self.counts.items())},
            "transitions": [
                {
                    "from": old,
                    "to": new,
                    "count": n,
                    "risky": (old, new) in RISKY,
                    "examples": self.examples.get((old, new), []),
                }
                for (old, new), n in changed
            ],
        }


def _summary(decision_input: Any) -> dict[str, Any]:
    logged = decision_input if isinstance(decision_input, Mapping) else {}

    def part(name: str) -> Mapping[str, Any]:
        value = logged.get(name)
        return value if isinstance(value, Mapping) else {}

    return {
        "principal": part("principal").get("id"),
        "action": logged.get("action"),
        "resource": part("resource").get("id"),
        "workspace": part("resource").get("workspace"),
        "channel": logged.get("channel"),
        "tool": part("tool").get("name"),
    }


def _as_logged(decision_input: Any, organization_id: str) -> Any:
    """The logged input, its principal defaulting to this organisation (as simulate does).
    Anything that is no mapping goes to the engine as it is, which denies it as invalid."""
    if not isinstance(decision_input, Mapping):
        return decision_input
    prepared = dict(decision_input)
    principal = prepared.get("principal")
    if isinstance(principal, Mapping):
        prepared["principal"] = {"organization": organization_id, **principal}
    return prepared


def evaluate(
    engine: DecisionEngine,
    rows: Sequence[Row[Any]],
    tally: Tally,
    organization_id: str,
    *,
    budget_seconds: float = SLICE_SECONDS,
) -> int:
    """Decide `rows` again (at least one, then until the time budget runs out); how many."""
    deadline = time.monotonic() + budget_seconds
    done = 0
    for row in rows:
        decision_input = _as_logged(row.input, organization_id)
        new = engine.decide(decision_input, dry_run=True).outcome
        pair = (row.outcome, new)
        tally.counts[pair] += 1
        kept = tally.examples.setdefault(pair, []) if row.outcome != new else None
        if kept is not None and len(kept) < tally.examples_per_transition:
            explained = engine.decide(decision_input, dry_run=True, explain=True)
            logged = row.result if isinstance(row.result, Mapping) else {}
            kept.append(
                {
                    "decision_id": row.decision_id,
                    "time": row.time.isoformat(),
                    "input": _summary(row.input),
                    "old": {
                        "outcome": row.outcome,
                        "reasons": [str(r) for r in logged.get("reasons") or []],
                        "rules": [str(r) for r in logged.get("matched_rules") or []],
                    },
                    "new": {
                        "outcome": explained.outcome,
                        "reasons": list(explained.reasons),
                        "rules": list(explained.matched_rules),
                    },
                }
            )
        done += 1
        if time.monotonic() >= deadline:
            break
    return done


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
        return await policies._selected(session, draft)
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


def _compile(sources: list[tuple[str, str]], context: CompileContext) -> CompiledPolicy:
    return policies._compile(policies._policy_set(sources), context)


async def create(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    keys: KeyRing,
    *,
    policy_id: uuid.UUID | None,
    since: datetime,
    until: datetime | None,
    draft: bool,
    limit: int,
    examples: int,
) -> tuple[ReplayJob, CompiledPolicy]:
    """A queued job and the compiled set it replays; the caller hands both to the runner."""
    now = utcnow()
    until = until or now
    if since >= until:
        raise Invalid("since must be before until", details=[{"field": "until"}])
    versions = await _versions(session, policy_id, draft=draft)
    total = await _count_window(session, since, until, limit)
    if total == 0:
        raise Invalid(
            f"no stored decisions between {since.isoformat()} and {until.isoformat()}",
            details=[{"field": "since"}, {"field": "until"}],
        )
    active = await session.scalar(
        select(func.count()).select_from(ReplayJob).where(ReplayJob.status.in_(ACTIVE))
    )
    if (active or 0) >= MAX_ACTIVE_PER_ORGANIZATION:
        raise Conflict(f"{active} replays are already queued or running; wait for one to finish")
    sources = await policies._sources(session, versions)
    context = await policies.compile_context(session, organization_id, keys)
    compiled = await asyncio.to_thread(_compile, sources, context)
    job = ReplayJob(
        status="queued",
        policy_id=policy_id,
        draft=draft,
        policies=versions,
        policies_hash=versions_hash(versions),
        since=since,
        until=until,
        max_decisions=limit,
        examples_per_transition=examples,
        total=total,
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
        policy_id=str(policy_id) if policy_id else None,
        policies=versions,
        since=since.isoformat(),
        until=until.isoformat(),
        limit=limit,
        total=total,
    )
    return job, compiled


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
) -> dict[str, int]:
    """The draft versions that may be published now, or a 409 saying what is missing.

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

    def __init__(self, db: Database) -> None:
        self._db = db
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

    def submit(self, job: ReplayJob, compiled: CompiledPolicy) -> None:
        task = asyncio.create_task(
            self._run(job.id, job.organization_id, compiled), name=f"replay-{job.id}"
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

    async def _run(
        self, job_id: uuid.UUID, organization_id: uuid.UUID, compiled: CompiledPolicy
    ) -> None:
        engine: DecisionEngine | None = None
        try:
            async with self._db.session(organization_id) as session:
                job = await session.get(ReplayJob, job_id)
                if job is None or job.status != "queued":
                    return
                job.status, job.started_at = "running", utcnow()
                job.heartbeat_at = job.started_at
                since, until, limit = job.since, job.until, job.max_decisions
                tally = Tally(job.examples_per_transition)
            engine = await asyncio.to_thread(DecisionEngine, compiled, cache_size=10_000)
            await self._replay(job_id, organization_id, engine, tally, since, until, limit)
        except asyncio.CancelledError:
            raise  # close() records it
        except Exception as exc:
            log.exception("replay %s failed", job_id)
            await self._finish(job_id, organization_id, error=f"{type(exc).__name__}: {exc}")
        finally:
            if engine is not None:
                engine.close()

    async def _replay(
        self,
        job_id: uuid.UUID,
        organization_id: uuid.UUID,
        engine: DecisionEngine,
        tally: Tally,
        since: datetime,
        until: datetime,
        limit: int,
    ) -> None:
        async def fetch(after: tuple[datetime, str] | None, size: int) -> Sequence[Row[Any]]:
            async with self._db.session(organization_id) as session:
                return await _next_batch(session, since, until, after, size)

        processed = 0
        # The next batch is read while this one is evaluated in a worker thread.
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
                offset = 0
                while offset < len(rows):
                    offset += await asyncio.to_thread(
                        evaluate, engine, rows[offset:], tally, str(organization_id)
                    )
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
