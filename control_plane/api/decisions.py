"""Decision logs: ingest from sidecars; the first read views for auditors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from control_plane.api.deps import Cursor, DatabaseDep, GatewayDep, Limit, Tenant, requires
from control_plane.db.models import DecisionLog, Execution
from control_plane.errors import NotFound
from control_plane.schemas import fleet as schemas
from control_plane.schemas.base import Page, QueryText
from control_plane.services import ingest
from control_plane.services.pagination import paginate

router = APIRouter(tags=["decisions"])

ReadDecisions = Annotated[Tenant, Depends(requires("decisions", "read"))]
ReadExecutions = Annotated[Tenant, Depends(requires("executions", "read"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 413: {}, 422: {}}


@router.post("/api/v1/decisions/ingest", responses=ERRORS)
async def ingest_decisions(
    body: schemas.DecisionBatch, identity: GatewayDep, db: DatabaseDep
) -> schemas.IngestResult:
    """Store a sidecar's batch of decisions; idempotent by `decision_id`."""
    async with db.session(identity.organization_id) as session:
        accepted, duplicates = await ingest.decisions(session, identity, body.decisions)
    return schemas.IngestResult(accepted=accepted, duplicates=duplicates)


@router.get("/api/v1/decisions", responses=ERRORS)
async def list_decisions(
    tenant: ReadDecisions,
    cursor: Cursor = None,
    limit: Limit = 100,
    outcome: Annotated[QueryText | None, Query()] = None,
    principal: Annotated[QueryText | None, Query()] = None,
    action: Annotated[QueryText | None, Query()] = None,
) -> Page[schemas.Decision]:
    """Decisions in the order they were made, oldest first, with exact-match filters."""
    query = select(DecisionLog)
    for column, value in (
        (DecisionLog.outcome, outcome),
        (DecisionLog.principal, principal),
        (DecisionLog.action, action),
    ):
        if value is not None:
            query = query.where(column == value)
    async with tenant.session() as session:
        rows, next_cursor = await paginate(session, query, DecisionLog, cursor, limit)
    return Page(items=[schemas.Decision.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/api/v1/decisions/{decision_id}", responses=ERRORS)
async def get_decision(
    decision_id: Annotated[str, QueryText], tenant: ReadDecisions
) -> schemas.Decision:
    async with tenant.session() as session:
        row = await session.scalar(
            select(DecisionLog).where(DecisionLog.decision_id == decision_id)
        )
    if row is None:
        raise NotFound("no such decision")
    return schemas.Decision.model_validate(row)


@router.post("/api/v1/executions/ingest", responses=ERRORS, tags=["executions"])
async def ingest_executions(
    body: schemas.ExecutionBatch, identity: GatewayDep, db: DatabaseDep
) -> schemas.IngestResult:
    """Store a gateway's batch of execution records; idempotent by `id`."""
    async with db.session(identity.organization_id) as session:
        accepted, duplicates = await ingest.executions(session, identity, body.executions)
    return schemas.IngestResult(accepted=accepted, duplicates=duplicates)


@router.get("/api/v1/executions", responses=ERRORS, tags=["executions"])
async def list_executions(
    tenant: ReadExecutions,
    cursor: Cursor = None,
    limit: Limit = 100,
    name: Annotated[QueryText | None, Query()] = None,
    status: Annotated[QueryText | None, Query()] = None,
    principal: Annotated[QueryText | None, Query()] = None,
) -> Page[schemas.Execution]:
    query = select(Execution)
    for column, value in (
        (Execution.name, name),
        (Execution.status, status),
        (Execution.principal, principal),
    ):
        if value is not None:
            query = query.where(column == value)
    async with tenant.session() as session:
        rows, next_cursor = await paginate(session, query, Execution, cursor, limit)
    return Page(items=[schemas.Execution.model_validate(r) for r in rows], next_cursor=next_cursor)
