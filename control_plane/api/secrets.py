"""Provider credentials: write-only. The API lists names and timestamps, never a value;
gateways read the keys from the secrets backend (Vault) at run time, never from here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from control_plane.api.deps import Tenant, get_secrets, requires
from control_plane.schemas import secrets as schemas
from control_plane.schemas.base import Page
from control_plane.services import provider_hosts, secrets
from control_plane.services.secrets import SecretStore

router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"])

Read = Annotated[Tenant, Depends(requires("secrets", "read"))]
Write = Annotated[Tenant, Depends(requires("secrets", "create"))]
Delete = Annotated[Tenant, Depends(requires("secrets", "delete"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 422: {}, 503: {}}


def get_store(request: Request) -> SecretStore:
    store: SecretStore = get_secrets(request)
    return store


StoreDep = Annotated[SecretStore, Depends(get_store)]


@router.get("", responses=ERRORS)
async def list_secrets(tenant: Read, store: StoreDep) -> Page[schemas.SecretInfo]:
    """Every secret of the organisation by name, with when it was created and last replaced."""
    async with tenant.session() as session:
        found = await store.list(tenant.organization_id, session=session)
    return Page(items=[schemas.SecretInfo.model_validate(i) for i in found])


@router.put("/providers/{provider}", responses={**ERRORS, 201: {}})
async def put_provider_key(
    provider: schemas.ProviderName,
    body: schemas.ProviderKeyPut,
    tenant: Write,
    store: StoreDep,
    response: Response,
) -> schemas.SecretInfo:
    """Store (201) or replace (200) the API key agents name as `api_key_secret: <provider>`;
    it is stored as `providers/<provider>/api_key` and never shown again. The key is bound
    to one host (`providers/<provider>/host`): the provider's own, or `base_url`'s (admin)."""
    host = provider_hosts.key_host(tenant.principal, provider, body.provider, body.base_url)
    async with tenant.session() as session:
        info, created = await secrets.put_provider_key(
            store,
            session,
            tenant.organization_id,
            tenant.actor,
            provider,
            body.api_key.get_secret_value(),
            host,
        )
    response.status_code = 201 if created else 200
    return schemas.SecretInfo.model_validate(info)


@router.delete("/providers/{provider}", status_code=204, responses=ERRORS)
async def delete_provider_key(
    provider: schemas.ProviderName, tenant: Delete, store: StoreDep
) -> Response:
    async with tenant.session() as session:
        await secrets.delete_provider_key(
            store, session, tenant.organization_id, tenant.actor, provider
        )
    return Response(status_code=204)
