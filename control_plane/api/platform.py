"""What a shared platform gateway's sidecars talk to (ADR 0012): the manifest of the
organisations it serves, and decision ingest filed under each organisation it serves.

The platform credential (`kgp_…`) is the operator's gateway, not a tenant: it gets the
organisations the control plane placed on it and nothing else. Bundles and their keys are
the ordinary `/api/v1/bundles/{scope}/…` endpoints (`bundles.py` lets a platform credential
read a scope it serves)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from control_plane.api.decisions import INGEST_BODY
from control_plane.api.deps import DatabaseDep, SettingsDep, bearer
from control_plane.errors import Forbidden, Unauthenticated
from control_plane.schemas import fleet
from control_plane.services import gateways, ingest, platform_gateways
from control_plane.services.gateways import GatewayIdentity
from control_plane.services.platform_gateways import PlatformIdentity

router = APIRouter(prefix="/api/v1/platform", tags=["platform"])
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 413: {}, 422: {}}


async def get_platform(request: Request, db: DatabaseDep) -> PlatformIdentity:
    """The platform gateway (or its sidecar) presenting its `kgp_…` credential."""
    credential = bearer(request)
    if not credential:
        raise Unauthenticated("send Authorization: Bearer <platform gateway credential>")
    return await platform_gateways.authenticate(db, credential)


PlatformDep = Annotated[PlatformIdentity, Depends(get_platform)]


@router.get("/manifest", responses=ERRORS)
async def get_manifest(identity: PlatformDep, db: DatabaseDep) -> dict[str, Any]:
    """The organisations this platform gateway serves and each one's newest bundle revision.

    Each bundle is fetched from `/api/v1/bundles/{organization}/bundle.tar.gz` and verified
    with that organisation's own keys (`…/jwks.json`): the manifest says what to load,
    never what to trust."""
    return await platform_gateways.manifest(db, identity)


@router.post(
    "/organizations/{organization_id}/decisions/ingest",
    responses=ERRORS,
    openapi_extra=INGEST_BODY,
)
async def ingest_platform_decisions(
    organization_id: uuid.UUID,
    request: Request,
    settings: SettingsDep,
    identity: PlatformDep,
    db: DatabaseDep,
) -> fleet.IngestResult:
    """A shared sidecar's batch of one organisation's decisions: `403` unless this platform
    gateway serves that organisation, or when a record's principal belongs to another.
    Filed under the organisation's handle on the shared gateway, like its executions and
    reports (an approval request held there names it, and its grant binds the platform
    credential)."""
    handle = await platform_gateways.handle_of(db, identity, organization_id)
    raw = ingest.inflate(
        await request.body(), request.headers.get("content-encoding"), settings.max_ingest_bytes
    )
    body = ingest.parse_batch(raw)
    for index, record in enumerate(body.decisions):
        principal = record.input.get("principal")
        named = principal.get("organization") if isinstance(principal, dict) else None
        if named is not None and named != str(organization_id):
            raise Forbidden(
                f"decisions.{index}: the decision's principal belongs to another organisation "
                f"than {organization_id}; refused",
                details=[{"field": f"decisions.{index}.input.principal.organization"}],
            )
    times = [record.time for record in body.decisions]
    ingest.check_times(times, "decisions.{}.time")
    reporter = GatewayIdentity(handle, organization_id, identity.name)

    async def store() -> tuple[int, int]:
        async with db.session(organization_id) as session:
            return await ingest.decisions(session, reporter, body.decisions)

    accepted, duplicates = await ingest.into_partitions(db, times, store)
    return fleet.IngestResult(accepted=accepted, duplicates=duplicates)


@router.post("/organizations/{organization_id}/executions/ingest", responses=ERRORS)
async def ingest_platform_executions(
    organization_id: uuid.UUID,
    body: fleet.ExecutionBatch,
    identity: PlatformDep,
    db: DatabaseDep,
) -> fleet.IngestResult:
    """A shared gateway's batch of one organisation's executions: `403` unless this platform
    gateway serves that organisation; idempotent by `id`."""
    handle = await platform_gateways.handle_of(db, identity, organization_id)
    reporter = GatewayIdentity(handle, organization_id, identity.name)
    async with db.session(organization_id) as session:
        accepted, duplicates = await ingest.executions(session, reporter, body.executions)
    return fleet.IngestResult(accepted=accepted, duplicates=duplicates)


@router.post("/organizations/{organization_id}/status", status_code=204, responses=ERRORS)
async def report_platform_status(
    organization_id: uuid.UUID,
    body: fleet.StatusReport,
    identity: PlatformDep,
    db: DatabaseDep,
) -> Response:
    """A shared sidecar's report for one organisation it serves, filed under that
    organisation's handle on the shared gateway (its instances, budgets' usage and the
    plan's 90 % warning, as from a dedicated sidecar); `403` unless it serves it."""
    handle = await platform_gateways.handle_of(db, identity, organization_id)
    reporter = GatewayIdentity(handle, organization_id, identity.name)
    async with db.session(organization_id) as session:
        await gateways.report_status(session, reporter, body.model_dump(mode="json"))
    return Response(status_code=204)
