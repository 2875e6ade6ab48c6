"""Organisation email domains: claim, prove by DNS TXT, list, forget (owners and admins)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.exc import IntegrityError

from control_plane.api.deps import Cursor, Limit, Tenant, get_settings, requires
from control_plane.db.models import OrganizationDomain
from control_plane.schemas.base import Page
from control_plane.schemas.domains import DomainCreate, DomainOut
from control_plane.services import domains

router = APIRouter(prefix="/api/v1/domains", tags=["domains"])

# Domains decide whom the organisation's SSO may sign in: the SSO administrators' business.
Read = Annotated[Tenant, Depends(requires("sso", "read"))]
Create = Annotated[Tenant, Depends(requires("sso", "create"))]
Update = Annotated[Tenant, Depends(requires("sso", "update"))]
Delete = Annotated[Tenant, Depends(requires("sso", "delete"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


def _out(row: OrganizationDomain) -> DomainOut:
    return DomainOut(
        id=row.id,
        domain=row.domain,
        verified=row.verified_at is not None,
        verified_at=row.verified_at,
        txt_name=row.domain,
        txt_value=domains.txt_value(row.token),
        created_at=row.created_at,
    )


def _nameserver(request: Request) -> domains.Nameserver:
    settings = get_settings(request)
    return domains.Nameserver.parse(settings.dns_nameserver, settings.dns_timeout_seconds)


@router.post("", status_code=201, responses=ERRORS)
async def claim_domain(body: DomainCreate, tenant: Create) -> DomainOut:
    """Claim a domain: publish `txt_value` as a TXT record at it, then verify. A claim
    alone grants nothing."""
    if await domains.verified_elsewhere(tenant.db, tenant.organization_id, body.domain):
        raise domains.taken(body.domain)
    async with tenant.session() as session:
        return _out(await domains.claim(session, tenant.organization_id, tenant.actor, body.domain))


@router.get("", responses=ERRORS)
async def list_domains(tenant: Read, cursor: Cursor = None, limit: Limit = 100) -> Page[DomainOut]:
    async with tenant.session() as session:
        rows, next_cursor = await domains.list_domains(session, cursor, limit)
        return Page(items=[_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/{domain_id}", responses=ERRORS)
async def get_domain(domain_id: uuid.UUID, tenant: Read) -> DomainOut:
    async with tenant.session() as session:
        return _out(await domains.get(session, domain_id))


@router.post("/{domain_id}/verify", responses={**ERRORS, 503: {}})
async def verify_domain(domain_id: uuid.UUID, request: Request, tenant: Update) -> DomainOut:
    """Look the TXT record up in DNS; 409 when another organisation verified the domain."""
    async with tenant.session() as session:
        row = await domains.get(session, domain_id)
        domain, token, done = row.domain, row.token, row.verified_at is not None
    if not done:
        if await domains.verified_elsewhere(tenant.db, tenant.organization_id, domain):
            raise domains.taken(domain)
        # The DNS round trip happens outside any transaction.
        await domains.prove(_nameserver(request), domain, token)
    try:
        async with tenant.session() as session:
            row = await domains.mark_verified(
                session, tenant.organization_id, tenant.actor, domain_id
            )
            out = _out(row)
    except IntegrityError:  # lost a race to another organisation; rolled back, nothing kept
        raise domains.taken(domain) from None
    await domains.drop_stale_routes(tenant.db, tenant.organization_id, domain)
    return out


@router.delete("/{domain_id}", status_code=204, responses=ERRORS)
async def delete_domain(domain_id: uuid.UUID, tenant: Delete) -> Response:
    """Forget the domain; this organisation's SSO stops routing and signing it in."""
    async with tenant.session() as session:
        await domains.remove(session, tenant.organization_id, tenant.actor, domain_id)
    return Response(status_code=204)
