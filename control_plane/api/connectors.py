"""`/api/v1/connectors`: data connectors with versioned settings and a write-only password."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from control_plane.api.deps import (
    BundleEventsDep,
    Cursor,
    KeyRingDep,
    Limit,
    SecretsDep,
    SettingsDep,
    Tenant,
    requires,
)
from control_plane.db.models import ConnectorVersion
from control_plane.schemas import connectors as schemas
from control_plane.schemas.base import Page
from control_plane.services import connectors

router = APIRouter(prefix="/api/v1/connectors", tags=["connectors"])

Read = Annotated[Tenant, Depends(requires("connectors", "read"))]
Create = Annotated[Tenant, Depends(requires("connectors", "create"))]
Update = Annotated[Tenant, Depends(requires("connectors", "update"))]
Delete = Annotated[Tenant, Depends(requires("connectors", "delete"))]
Test = Annotated[Tenant, Depends(requires("connectors", "test"))]
Version = Annotated[int, Path(ge=1, le=schemas.MAX_VERSION)]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


def connector_out(view: connectors.ConnectorView) -> schemas.Connector:
    connector = view.connector
    return schemas.Connector(
        id=connector.id,
        name=connector.name,
        type=connector.type,
        latest_version=connector.latest_version,
        settings={k: v for k, v in view.settings.items() if k != "type"},
        has_credential=connector.credential_updated_at is not None,
        credential_updated_at=connector.credential_updated_at,
        agents=view.agents,
        created_at=connector.created_at,
        updated_at=connector.updated_at,
    )


def version_out(row: ConnectorVersion) -> schemas.ConnectorVersion:
    settings = {k: v for k, v in row.settings.items() if k != "type"}
    return schemas.ConnectorVersion(
        version=row.version, settings=settings, created_at=row.created_at, created_by=row.created_by
    )


def _settings(body: schemas.SettingsIn) -> dict[str, Any]:
    return body.model_dump(by_alias=True)


@router.post("", status_code=201, responses=ERRORS)
async def create_connector(
    body: schemas.ConnectorCreate, tenant: Create, store: SecretsDep, settings: SettingsDep
) -> schemas.Connector:
    """Create a connector (version 1); `password` (the credential) is stored in the secret
    store, never shown. Types: postgresql, mysql (`sql.query`); s3, azure_blob (`objects.*`)."""
    async with tenant.session() as session:
        view = await connectors.create(
            session,
            store,
            tenant.organization_id,
            tenant.actor,
            name=body.name,
            kind=body.type,
            settings=_settings(body.settings),
            password=body.password.get_secret_value() if body.password else None,
            guard=settings.outbound_guard,
        )
    return connector_out(view)


@router.get("", responses=ERRORS)
async def list_connectors(
    tenant: Read, cursor: Cursor = None, limit: Limit = 100
) -> Page[schemas.Connector]:
    async with tenant.session() as session:
        views, next_cursor = await connectors.list_connectors(session, cursor, limit)
    return Page(items=[connector_out(v) for v in views], next_cursor=next_cursor)


@router.get("/{connector_id}", responses=ERRORS)
async def get_connector(connector_id: uuid.UUID, tenant: Read) -> schemas.Connector:
    async with tenant.session() as session:
        view = await connectors.get(session, connector_id)
    return connector_out(view)


@router.patch("/{connector_id}", responses=ERRORS)
async def update_connector(
    connector_id: uuid.UUID,
    body: schemas.ConnectorUpdate,
    tenant: Update,
    store: SecretsDep,
    settings: SettingsDep,
    keys: KeyRingDep,
    bundle_events: BundleEventsDep,
) -> schemas.Connector:
    """New settings are the next version (unchanged ones keep it); `password` replaces the
    stored one. When a deployed agent names the connector, the published bundle is re-signed
    with the new settings at once (gateways read the password at run time)."""
    async with tenant.session() as session:
        updated = await connectors.update(
            session,
            store,
            tenant.organization_id,
            tenant.actor,
            connector_id,
            settings=_settings(body.settings) if body.settings else None,
            password=body.password.get_secret_value() if body.password else None,
            guard=settings.outbound_guard,
            keys=keys,
            issuer=settings.issuer,
        )
    if updated.revision is not None:
        await bundle_events.notify(str(tenant.organization_id), updated.revision.revision)
    return connector_out(updated.view)


@router.delete("/{connector_id}", status_code=204, responses=ERRORS)
async def delete_connector(connector_id: uuid.UUID, tenant: Delete, store: SecretsDep) -> Response:
    """Delete the connector and its password; 409 while a deployed agent names it."""
    async with tenant.session() as session:
        await connectors.delete(session, store, tenant.organization_id, tenant.actor, connector_id)
    return Response(status_code=204)


@router.get("/{connector_id}/versions", responses=ERRORS)
async def list_versions(connector_id: uuid.UUID, tenant: Read) -> schemas.ConnectorVersionList:
    async with tenant.session() as session:
        rows = await connectors.versions(session, connector_id)
        return schemas.ConnectorVersionList(items=[version_out(r) for r in rows])


@router.get("/{connector_id}/versions/{version}", responses=ERRORS)
async def get_version(
    connector_id: uuid.UUID, version: Version, tenant: Read
) -> schemas.ConnectorVersion:
    async with tenant.session() as session:
        return version_out(await connectors.get_version(session, connector_id, version))


@router.post("/{connector_id}/test", responses=ERRORS)
async def test_connector(
    connector_id: uuid.UUID, tenant: Test, store: SecretsDep, settings: SettingsDep
) -> schemas.ConnectionTest:
    """Connect and authenticate with the stored password (audited). A failure is `ok: false`
    with `code`: auth_failed, unreachable, tls, refused (the outbound guard), database,
    credential_missing."""
    async with tenant.session() as session:
        prepared = await connectors.prepare_test(
            session, store, tenant.organization_id, connector_id
        )
    outcome = await connectors.run_test(prepared, settings.outbound_guard)
    async with tenant.session() as session:
        await connectors.record_test(
            session, tenant.organization_id, tenant.actor, prepared, outcome
        )
    return schemas.ConnectionTest(
        ok=outcome.ok,
        code=outcome.code,
        message=outcome.message,
        server_version=outcome.server_version,
    )
