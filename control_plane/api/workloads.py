"""`/api/v1/agents` and `/api/v1/pipelines`: the same collection shape for both kinds.

No `from __future__ import annotations` here: the routes are built in a function, and
FastAPI must see their dependency aliases (local to it) as objects, not as strings.
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from control_plane.api.deps import Cursor, Limit, Tenant, requires
from control_plane.db.models import Workload, WorkloadVersion
from control_plane.schemas import workloads as schemas
from control_plane.schemas.base import Page
from control_plane.services import workloads
from control_plane.services.workloads import COLLECTION, DOCUMENT_KIND, Kind

ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}
Version = Annotated[int, Path(ge=1, le=schemas.MAX_VERSION)]


def workload_out(workload: Workload, config: dict[str, Any]) -> schemas.Workload:
    return schemas.Workload(
        id=workload.id,
        kind=workload.kind,
        name=workload.name,
        description=workloads.description(config),
        latest_version=workload.latest_version,
        config=config,
        created_at=workload.created_at,
        updated_at=workload.updated_at,
    )


def version_out(row: WorkloadVersion, *, full: bool) -> schemas.WorkloadVersion:
    return schemas.WorkloadVersion(
        version=row.version,
        sha256=row.sha256,
        created_at=row.created_at,
        created_by=row.created_by,
        config=row.config if full else None,
        source=row.source if full else None,
    )


def _router(kind: Kind) -> APIRouter:
    collection = COLLECTION[kind]
    document = DOCUMENT_KIND[kind]
    router = APIRouter(prefix=f"/api/v1/{collection}", tags=[collection])
    read = Annotated[Tenant, Depends(requires(collection, "read"))]
    create = Annotated[Tenant, Depends(requires(collection, "create"))]
    delete = Annotated[Tenant, Depends(requires(collection, "delete"))]
    ident = f"{kind}_id"
    IdParam = Annotated[uuid.UUID, Path(alias=ident)]

    @router.get("", responses=ERRORS, name=f"list_{collection}")
    async def list_workloads(
        tenant: read, cursor: Cursor = None, limit: Limit = 100
    ) -> Page[schemas.Workload]:
        async with tenant.session() as session:
            rows, next_cursor = await workloads.list_workloads(session, kind, cursor, limit)
            configs = await workloads.latest_configs(session, rows)
        return Page(items=[workload_out(w, configs[w.id]) for w in rows], next_cursor=next_cursor)

    @router.post("", status_code=201, responses={**ERRORS, 402: {}}, name=f"apply_{collection}")
    async def apply(body: schemas.WorkloadSource, tenant: create) -> schemas.WorkloadApplied:
        async with tenant.session() as session:
            applied = await workloads.apply(
                session, tenant.organization_id, tenant.actor, kind, body.source
            )
            configs = await workloads.latest_configs(session, applied.workloads)
        return schemas.WorkloadApplied(
            items=[workload_out(w, configs[w.id]) for w in applied.workloads],
            created=applied.created,
            updated=applied.updated,
            unchanged=applied.unchanged,
        )

    @router.get(f"/{{{ident}}}", responses=ERRORS, name=f"get_{kind}")
    async def get(workload_id: IdParam, tenant: read) -> schemas.Workload:
        async with tenant.session() as session:
            workload, latest = await workloads.get(session, kind, workload_id)
        return workload_out(workload, latest.config)

    @router.delete(f"/{{{ident}}}", status_code=204, responses=ERRORS, name=f"delete_{kind}")
    async def remove(workload_id: IdParam, tenant: delete) -> Response:
        async with tenant.session() as session:
            await workloads.delete(session, tenant.organization_id, tenant.actor, kind, workload_id)
        return Response(status_code=204)

    @router.get(f"/{{{ident}}}/versions", responses=ERRORS, name=f"list_{kind}_versions")
    async def versions(workload_id: IdParam, tenant: read) -> schemas.WorkloadVersionList:
        async with tenant.session() as session:
            rows = await workloads.list_versions(session, kind, workload_id)
        return schemas.WorkloadVersionList(items=[version_out(r, full=False) for r in rows])

    @router.get(f"/{{{ident}}}/versions/{{version}}", responses=ERRORS, name=f"get_{kind}_version")
    async def version(
        workload_id: IdParam, version: Version, tenant: read
    ) -> schemas.WorkloadVersion:
        async with tenant.session() as session:
            row = await workloads.get_version(session, kind, workload_id, version)
        return version_out(row, full=True)

    @router.get(
        f"/{{{ident}}}/export",
        responses={**ERRORS, 200: {"content": {"application/yaml": {}}}},
        response_class=Response,
        name=f"export_{kind}",
    )
    async def export(
        workload_id: IdParam,
        tenant: read,
        version: Annotated[int | None, Query(ge=1, le=schemas.MAX_VERSION)] = None,
    ) -> Response:
        async with tenant.session() as session:
            workload, text = await workloads.export(session, kind, workload_id, version)
        return Response(
            text,
            media_type="application/yaml",
            headers={"Content-Disposition": f'attachment; filename="{workload.name}.yaml"'},
        )

    list_workloads.__doc__ = f"The organisation's {collection}, each with its latest config."
    apply.__doc__ = (
        f"Create {collection} or new versions from `kind: {document}` documents, by "
        "`metadata.name`; all or nothing. Unchanged configs keep their version. A malformed "
        "document, or a reference to an agent that does not exist, is a 422 whose `details` "
        "name the document, field, line and column."
    )
    get.__doc__ = f"The {kind} with its latest version's config."
    remove.__doc__ = f"Delete the {kind} and every version; 409 while a deployment needs it."
    export.__doc__ = f"The {kind}'s config (latest, or `version`) as YAML that POST takes back."
    return router


agents = _router("agent")
pipelines = _router("pipeline")
