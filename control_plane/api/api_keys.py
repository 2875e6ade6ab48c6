from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from control_plane.api.deps import Cursor, Limit, Tenant, requires
from control_plane.api.policies import refresh_bundle
from control_plane.schemas.base import Page
from control_plane.schemas.identity import ApiKey, ApiKeyCreate, ApiKeyCreated
from control_plane.services import api_keys

router = APIRouter(prefix="/api/v1/api-keys", tags=["api-keys"])

Read = Annotated[Tenant, Depends(requires("api_keys", "read"))]
Create = Annotated[Tenant, Depends(requires("api_keys", "create"))]
Delete = Annotated[Tenant, Depends(requires("api_keys", "delete"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


@router.get("", responses=ERRORS)
async def list_api_keys(tenant: Read, cursor: Cursor = None, limit: Limit = 100) -> Page[ApiKey]:
    async with tenant.session() as session:
        rows, next_cursor = await api_keys.list_keys(session, cursor, limit)
    return Page(items=[ApiKey.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("", status_code=201, responses=ERRORS)
async def create_api_key(body: ApiKeyCreate, tenant: Create, request: Request) -> ApiKeyCreated:
    """Create a key; the `key` field of the answer is the only time the secret is shown.

    Sidecars learn of the key with the next bundle revision, signed at once."""
    async with tenant.session() as session:
        created = await api_keys.create_key(session, tenant.principal, tenant.actor, body)
    await refresh_bundle(request, tenant, f"API key {body.name} created")
    return created


@router.get("/{key_id}", responses=ERRORS)
async def get_api_key(key_id: uuid.UUID, tenant: Read) -> ApiKey:
    async with tenant.session() as session:
        return ApiKey.model_validate(await api_keys.get_key(session, key_id))


@router.delete("/{key_id}", status_code=204, responses=ERRORS)
async def revoke_api_key(key_id: uuid.UUID, tenant: Delete, request: Request) -> Response:
    """Revoke the key; it stops working at once here and at the sidecars with the bundle
    revision this signs; it stays listed as revoked."""
    async with tenant.session() as session:
        await api_keys.revoke_key(session, tenant.organization_id, tenant.actor, key_id)
    await refresh_bundle(request, tenant, f"API key {key_id} revoked")
    return Response(status_code=204)
