"""The replay worker: one asyncio task per job of this process, deciding the window's stored
decisions again slice by slice in the Rego sandbox and writing progress to the job row.
A job whose process stopped is marked failed, never left running (at shutdown and at the
next start; reads fail stale ones, `replay.get`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, update

from control_plane.db.base import utcnow
from control_plane.db.models import ReplayJob
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import KaizenError
from control_plane.services.rego_sandbox import RegoSandbox
from control_plane.services.rego_tasks import Tally, replay_slice
from control_plane.services.replay import ACTIVE, STALE_AFTER, ReplayPlan, logged, next_batch

log = logging.getLogger(__name__)

BATCH = 1000


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
                return await next_batch(session, since, until, after, size)

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
                decisions = [logged(row) for row in rows]
                offset = 0
                while offset < len(decisions):
                    done, tally = await self._sandbox.run(
                        str(organization_id),
                        plan.what,
                        replay_slice,
                        plan.key,
                        plan.sources,
                        plan.context,
                        decisions[offset:],
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
