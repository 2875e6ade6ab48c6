"""Impact replay of stored decisions against policy drafts, and the publish-gate setting.

Included before the policies router: `/api/v1/policies/settings` must win over
`/api/v1/policies/{policy_id}`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from control_plane.api.deps import (
    Cursor,
    KeyRingDep,
    Limit,
    RegoDep,
    ReplaysDep,
    Tenant,
    requires,
)
from control_plane.api.policies import limit_rate
from control_plane.db.models import ReplayJob
from control_plane.schemas import replay as schemas
from control_plane.schemas.base import Page
from control_plane.services import replay, replay_gate
from control_plane.services.keys import KeyRing
from control_plane.services.rego_sandbox import RegoSandbox
from control_plane.services.replay_runner import ReplayRunner

router = APIRouter(tags=["replays"])

Read = Annotated[Tenant, Depends(requires("policies", "read"))]
Simulate = Annotated[Tenant, Depends(requires("policies", "simulate"))]
Publish = Annotated[Tenant, Depends(requires("policies", "publish"))]
ERRORS: dict[int | str, dict[str, object]] = {
    401: {},
    403: {},
    404: {},
    409: {},
    422: {},
    429: {},
}


def replay_out(job: ReplayJob, *, with_result: bool = True) -> schemas.Replay:
    result = job.result if with_result and job.result is not None else None
    return schemas.Replay(
        id=job.id,
        status=job.status,
        policy_id=job.policy_id,
        draft=job.draft,
        policies=job.policies,
        policies_hash=job.policies_hash,
        since=job.since,
        until=job.until,
        limit=job.max_decisions,
        examples=job.examples_per_transition,
        total=job.total,
        processed=job.processed,
        progress=round(job.processed / job.total, 4) if job.total else 0.0,
        error=job.error,
        created_at=job.created_at,
        created_by=job.created_by,
        started_at=job.started_at,
        finished_at=job.finished_at,
        result=schemas.ReplayResult.model_validate(result) if result is not None else None,
    )


@dataclass(frozen=True)
class Replayer:
    """What starting a replay uses of what the lifespan set up."""

    keys: KeyRing
    rego: RegoSandbox
    runner: ReplayRunner


def get_replayer(keys: KeyRingDep, rego: RegoDep, runner: ReplaysDep) -> Replayer:
    return Replayer(keys, rego, runner)


ReplayerDep = Annotated[Replayer, Depends(get_replayer)]


async def _start(
    request: Request,
    response: Response,
    tenant: Tenant,
    replayer: Replayer,
    body: schemas.ReplayRequest,
    policy_id: uuid.UUID | None,
) -> schemas.Replay:
    await limit_rate(request, tenant, "replay")
    async with tenant.session() as session:
        plan = await replay.plan(
            session,
            tenant.organization_id,
            replayer.keys,
            policy_id=policy_id,
            since=body.since,
            until=body.until,
            draft=body.draft,
            limit=body.limit,
            examples=body.examples,
        )
    # Probed with no transaction open: no lock or connection is held while Rego runs.
    await replay.probe(replayer.rego, tenant.organization_id, plan)
    async with tenant.session() as session:
        job = await replay.create(session, tenant.organization_id, tenant.actor, plan)
    # Started only once the job row is committed, so the task always finds it.
    replayer.runner.submit(job, plan)
    response.headers["Location"] = f"/api/v1/replays/{job.id}"
    return replay_out(job)


@router.get("/api/v1/policies/settings", responses=ERRORS, tags=["policies"])
async def get_settings(tenant: Read) -> schemas.PolicySettings:
    async with tenant.session() as session:
        row = await replay_gate.get_settings(session)
    return schemas.PolicySettings.model_validate(row)


@router.patch("/api/v1/policies/settings", responses=ERRORS, tags=["policies"])
async def update_settings(
    body: schemas.PolicySettingsUpdate, tenant: Publish
) -> schemas.PolicySettings:
    """`require_replay_before_publish`: publish only after a replay of exactly the drafts
    shows no allow→deny, allow→require_approval or deny→allow change (or one is accepted)."""
    async with tenant.session() as session:
        row = await replay_gate.update_settings(
            session,
            tenant.organization_id,
            tenant.actor,
            require_replay=body.require_replay_before_publish,
        )
    return schemas.PolicySettings.model_validate(row)


@router.post("/api/v1/policies/replay", status_code=202, responses=ERRORS, tags=["policies"])
async def replay_set(
    body: schemas.ReplayRequest,
    tenant: Simulate,
    replayer: ReplayerDep,
    request: Request,
    response: Response,
) -> schemas.Replay:
    """Replay stored decisions of a time window against the whole draft set (or, with
    `draft: false`, the published set); poll `GET /api/v1/replays/{id}` for the report."""
    return await _start(request, response, tenant, replayer, body, None)


@router.post(
    "/api/v1/policies/{policy_id}/replay", status_code=202, responses=ERRORS, tags=["policies"]
)
async def replay_policy(
    policy_id: uuid.UUID,
    body: schemas.ReplayRequest,
    tenant: Simulate,
    replayer: ReplayerDep,
    request: Request,
    response: Response,
) -> schemas.Replay:
    """Replay against the published set with only this policy at its draft (a deleted
    policy: without it), to see this one change's impact."""
    return await _start(request, response, tenant, replayer, body, policy_id)


@router.get("/api/v1/replays", responses=ERRORS)
async def list_replays(
    tenant: Simulate, cursor: Cursor = None, limit: Limit = 100
) -> Page[schemas.Replay]:
    """Replays, oldest first, without their results (fetch one for its report)."""
    async with tenant.session() as session:
        rows, next_cursor = await replay.list_jobs(session, cursor, limit)
    return Page(items=[replay_out(r, with_result=False) for r in rows], next_cursor=next_cursor)


@router.get("/api/v1/replays/{replay_id}", responses=ERRORS)
async def get_replay(replay_id: uuid.UUID, tenant: Simulate) -> schemas.Replay:
    """Status, progress (`processed`/`total`) and the result: counts of outcome transitions
    with examples and the rules responsible (partial while running)."""
    async with tenant.session() as session:
        job = await replay.get(session, replay_id)
    return replay_out(job)
