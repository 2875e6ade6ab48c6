"""Decision logs: ingest from sidecars and stock OPA agents; search, export, aggregates and
chain verification for auditors; retention for owners."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from control_plane import observability
from control_plane.api.deps import (
    Cursor,
    DatabaseDep,
    GatewayDep,
    Limit,
    SettingsDep,
    Tenant,
    requires,
)
from control_plane.errors import NotFound
from control_plane.schemas import decisions as schemas
from control_plane.schemas import fleet
from control_plane.schemas.base import Page, QueryText
from control_plane.schemas.fleet import Identifier
from control_plane.services import (
    audit,
    decision_chain,
    decision_retention,
    executions,
    ingest,
    ingest_opa,
)
from control_plane.services import decisions as service

router = APIRouter(tags=["decisions"])

ReadDecisions = Annotated[Tenant, Depends(requires("decisions", "read"))]
ExportDecisions = Annotated[Tenant, Depends(requires("decisions", "export"))]
# Verifying tamper evidence is an auditor's act, the same permission as the audit chain's.
VerifyChain = Annotated[Tenant, Depends(requires("audit_events", "verify"))]
SetRetention = Annotated[Tenant, Depends(requires("organization", "update"))]
ReadExecutions = Annotated[Tenant, Depends(requires("executions", "read"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 413: {}, 422: {}}
INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["decisions"],
                    "additionalProperties": False,
                    "properties": {
                        "decisions": {
                            "type": "array",
                            "maxItems": 1000,
                            "items": schemas.IngestRecord.model_json_schema(),
                        }
                    },
                }
            }
        },
    }
}
OPA_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": schemas.OpaEvent.model_json_schema(),
                    "description": "OPA decision-log events; gzip with Content-Encoding: gzip",
                }
            }
        },
    }
}


@router.post("/api/v1/decisions/ingest", responses=ERRORS, openapi_extra=INGEST_BODY)
async def ingest_decisions(
    request: Request, settings: SettingsDep, identity: GatewayDep, db: DatabaseDep
) -> fleet.IngestResult:
    """Store a sidecar's batch of decisions (plain or `Content-Encoding: gzip`, at most
    `KAIZEN_MAX_INGEST_BYTES` either way); idempotent by `decision_id`."""
    raw = ingest.inflate(
        await request.body(), request.headers.get("content-encoding"), settings.max_ingest_bytes
    )
    body = ingest.parse_batch(raw)
    times = [record.time for record in body.decisions]
    ingest.check_times(times, "decisions.{}.time")

    async def store() -> tuple[int, int]:
        async with db.session(identity.organization_id) as session:
            return await ingest.decisions(session, identity, body.decisions)

    accepted, duplicates = await ingest.into_partitions(db, times, store)
    return fleet.IngestResult(accepted=accepted, duplicates=duplicates)


@router.post("/api/v1/decisions/opa", responses=ERRORS, openapi_extra=OPA_BODY)
async def ingest_opa_decisions(
    request: Request, settings: SettingsDep, identity: GatewayDep, db: DatabaseDep
) -> fleet.IngestResult:
    """OPA's decision-log upload (a JSON array, gzip or plain), for stock OPA agents: point
    OPA's `decision_logs` service here with the gateway credential as its bearer token."""
    limit = settings.max_ingest_bytes
    raw = ingest_opa.read_opa_upload(
        await request.body(), request.headers.get("content-encoding"), limit
    )
    events = ingest_opa.opa_events(raw)
    ingest.check_times([e.timestamp for e in events], "{}.timestamp")
    rows = ingest_opa.opa_rows(identity, events)

    async def store() -> tuple[int, int]:
        accepted = duplicates = 0
        async with db.session(identity.organization_id) as session:
            for start in range(0, len(rows), 1000):
                new, again = await ingest.store_decisions(
                    session, identity.organization_id, rows[start : start + 1000], "body"
                )
                accepted, duplicates = accepted + new, duplicates + again
        return accepted, duplicates

    accepted, duplicates = await ingest.into_partitions(db, [row["time"] for row in rows], store)
    return fleet.IngestResult(accepted=accepted, duplicates=duplicates)


@router.get("/api/v1/decisions", responses=ERRORS)
async def list_decisions(
    tenant: ReadDecisions, query: Annotated[schemas.DecisionSearch, Query()]
) -> Page[schemas.Decision]:
    """Decisions newest first (time, then decision id, descending), filtered; keyset pages."""
    async with tenant.session() as session:
        rows, next_cursor = await service.search(session, query, query.cursor, query.limit)
    return Page(items=[schemas.Decision.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/api/v1/decisions/export",
    responses={**ERRORS, 200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
    response_class=StreamingResponse,
)
async def export_decisions(
    tenant: ExportDecisions, query: Annotated[schemas.DecisionExport, Query()]
) -> StreamingResponse:
    """Every matching decision, newest first, streamed as NDJSON or CSV."""
    filters = query.model_dump(exclude={"format"}, exclude_none=True, mode="json")
    async with tenant.session() as session:
        await audit.record(
            session,
            tenant.organization_id,
            tenant.actor,
            "decisions.export",
            "decision_log",
            None,
            format=query.format,
            filters=filters,
        )
    if query.format == "csv":
        body, media_type = service.export_csv(tenant.session, query), "text/csv; charset=utf-8"
    else:
        body, media_type = service.export_ndjson(tenant.session, query), "application/x-ndjson"
    filename = f"decisions.{query.format}"
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/api/v1/decisions/aggregates", responses=ERRORS)
async def aggregate_decisions(
    tenant: ReadDecisions, query: Annotated[schemas.AggregateQuery, Query()]
) -> schemas.Aggregates:
    """Decision counts per hour or day by outcome, principal or resource (top keys)."""
    async with tenant.session() as session:
        result = await service.aggregates(session, query)
    return schemas.Aggregates(
        by=result.by,
        interval=result.interval,
        since=result.since,
        until=result.until,
        keys=result.keys,
        buckets=[schemas.Bucket(**b) for b in result.buckets],
    )


@router.get("/api/v1/decisions/verify", responses=ERRORS)
async def verify_decision_chain(tenant: VerifyChain) -> schemas.DecisionChainVerification:
    """Recompute the organisation's decision chain; names the first broken link."""
    report = await decision_chain.verify(tenant.session)
    observability.chain_verified("decisions", report.ok)
    return schemas.DecisionChainVerification.model_validate(report)


@router.get("/api/v1/decisions/retention", responses=ERRORS)
async def get_decision_retention(tenant: ReadDecisions) -> schemas.Retention:
    async with tenant.session() as session:
        chain = await decision_retention.get_retention(session)
    if chain is None:
        return schemas.Retention(
            retention_days=decision_chain.DEFAULT_RETENTION_DAYS, expired_before=None
        )
    return schemas.Retention.model_validate(chain)


@router.put("/api/v1/decisions/retention", responses=ERRORS)
async def set_decision_retention(
    body: schemas.RetentionUpdate, tenant: SetRetention
) -> schemas.Retention:
    """How many days decisions are kept; `kaizen-studio db expire-decisions` removes older."""
    async with tenant.session() as session:
        chain = await decision_retention.set_retention(
            session, tenant.organization_id, tenant.actor, body.retention_days
        )
    return schemas.Retention.model_validate(chain)


@router.get("/api/v1/decisions/{decision_id}", responses=ERRORS)
async def get_decision(
    decision_id: Annotated[str, Identifier], tenant: ReadDecisions
) -> schemas.DecisionDetail:
    """One decision: the input as masked at source, the output, and the deciding bundle."""
    async with tenant.session() as session:
        found = await service.detail(session, decision_id)
    if found is None:
        raise NotFound("no such decision")
    row, bundle = found
    return schemas.DecisionDetail.model_validate(
        {
            **schemas.Decision.model_validate(row).model_dump(),
            "chain_hash": row.chain_hash,
            "ingested_at": row.created_at,
            "bundle": schemas.DecidingBundle.model_validate(bundle) if bundle else None,
        }
    )


@router.post("/api/v1/executions/ingest", responses=ERRORS, tags=["executions"])
async def ingest_executions(
    body: fleet.ExecutionBatch, identity: GatewayDep, db: DatabaseDep
) -> fleet.IngestResult:
    """Store a gateway's batch of execution records; idempotent by `id`."""
    async with db.session(identity.organization_id) as session:
        accepted, duplicates = await ingest.executions(session, identity, body.executions)
    return fleet.IngestResult(accepted=accepted, duplicates=duplicates)


@router.get("/api/v1/executions", responses=ERRORS, tags=["executions"])
async def list_executions(
    tenant: ReadExecutions,
    cursor: Cursor = None,
    limit: Limit = 100,
    name: Annotated[QueryText | None, Query()] = None,
    status: Annotated[QueryText | None, Query()] = None,
    principal: Annotated[QueryText | None, Query()] = None,
) -> Page[fleet.Execution]:
    async with tenant.session() as session:
        rows, next_cursor = await executions.list_executions(
            session, cursor=cursor, limit=limit, name=name, status=status, principal=principal
        )
    return Page(items=[fleet.Execution.model_validate(r) for r in rows], next_cursor=next_cursor)
