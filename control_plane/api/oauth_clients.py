"""MCP clients in the studio: the consent step, each user's authorized clients, and the
organisation's view for administrators (block a client, the registration settings)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from control_plane.api.deps import OAuthFlowDep, PrincipalDep, Tenant, client_ip, requires
from control_plane.db.models import OAuthClient, OAuthGrant
from control_plane.errors import Forbidden
from control_plane.schemas import oauth as schemas
from control_plane.services.audit import Actor
from control_plane.services.oauth import clients, grants
from control_plane.services.principal import Principal
from policy.runtime.logs import request_id_var

router = APIRouter(prefix="/api/v1/oauth", tags=["oauth"])
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 422: {}}

Read = Annotated[Tenant, Depends(requires("oauth_clients", "read"))]
Update = Annotated[Tenant, Depends(requires("oauth_clients", "update"))]


def get_person(principal: PrincipalDep) -> Principal:
    if principal.kind != "user":
        raise Forbidden("MCP-client consent belongs to people; an API key has none")
    return principal


PersonDep = Annotated[Principal, Depends(get_person)]


def _actor(principal: Principal, request: Request) -> Actor:
    return Actor.of(principal, client_ip(request), request_id_var.get())


def _grant_out(
    grant: OAuthGrant, client: OAuthClient, gateway_name: str, email: str
) -> schemas.OAuthGrantOut:
    return schemas.OAuthGrantOut(
        id=grant.id,
        client_id=client.client_id,
        client_name=client.client_name,
        gateway=gateway_name,
        resource=grant.resource,
        scopes=grant.scope.split(),
        user=email,
        created_at=grant.created_at,
        last_used_at=grant.last_used_at,
    )


@router.get("/requests/{request_id}", responses=ERRORS)
async def consent_request(
    request_id: str, principal: PersonDep, flow: OAuthFlowDep
) -> schemas.ConsentRequest:
    """The pending authorization request the consent page shows."""
    pending = await flow.pending(request_id, principal)
    return schemas.ConsentRequest(
        request_id=request_id,
        client_id=pending["client_id"],
        client_name=pending["client_name"],
        redirect_uri=pending["redirect_uri"],
        gateway=pending["gateway"],
        resource=pending["resource"],
        scopes=pending["scope"].split(),
    )


@router.post("/requests/{request_id}", responses=ERRORS)
async def decide(
    request_id: str,
    body: schemas.ConsentDecision,
    principal: PersonDep,
    request: Request,
    flow: OAuthFlowDep,
) -> schemas.ConsentAnswer:
    """Approve or deny; the answer is where the browser goes next (the client's redirect
    URI with a code, or with `error=access_denied`)."""
    actor = _actor(principal, request)
    redirect = await flow.decide(request_id, principal, actor, approve=body.approve)
    return schemas.ConsentAnswer(redirect_to=redirect)


@router.get("/grants", responses=ERRORS)
async def my_grants(principal: PersonDep, flow: OAuthFlowDep) -> list[schemas.OAuthGrantOut]:
    """The MCP clients the caller authorized, one entry per grant."""
    async with flow.db.session(principal.organization_id) as session:
        rows = await grants.for_user(session, principal.id)
    return [_grant_out(g, c, gw.name, email) for g, c, gw, email in rows]


@router.delete("/grants/{grant_id}", status_code=204, responses=ERRORS)
async def revoke_my_grant(
    grant_id: uuid.UUID, principal: PersonDep, request: Request, flow: OAuthFlowDep
) -> Response:
    """Revoke one of the caller's grants: its refresh tokens at once, its access tokens at
    the sidecars with the next bundle."""
    org = principal.organization_id
    async with flow.db.session(org) as session:
        sid = await grants.revoke(
            session, org, _actor(principal, request), grant_id, user_id=principal.id, why="user"
        )
    await flow.auth.revoke_session(sid, org)
    return Response(status_code=204)


@router.get("/clients", responses=ERRORS)
async def organization_clients(tenant: Read) -> schemas.OAuthClientsOut:
    """Every MCP client the organisation knows and every live grant (administrators)."""
    async with tenant.session() as session:
        known = await grants.organization_clients(session)
    return schemas.OAuthClientsOut(
        clients=[
            schemas.OAuthClientOut(
                id=c.id,
                client_id=c.client_id,
                client_name=c.client_name,
                kind=c.kind,
                redirect_uris=list(c.redirect_uris),
                blocked=c.blocked_at is not None,
                created_at=c.created_at,
            )
            for c in known.clients
        ],
        grants=[_grant_out(g, c, gw.name, email) for g, c, gw, email in known.grants],
    )


@router.put("/clients/{client_ref}/blocked", responses=ERRORS)
async def block_client(
    client_ref: uuid.UUID, body: schemas.BlockClient, tenant: Update, flow: OAuthFlowDep
) -> schemas.OAuthClientOut:
    """Block a client (its grants end, new authorizations and refreshes are refused) or
    unblock it."""
    async with tenant.session() as session:
        client, ended = await grants.block(
            session, tenant.organization_id, tenant.actor, client_ref, blocked=body.blocked
        )
        out = schemas.OAuthClientOut(
            id=client.id,
            client_id=client.client_id,
            client_name=client.client_name,
            kind=client.kind,
            redirect_uris=list(client.redirect_uris),
            blocked=client.blocked_at is not None,
            created_at=client.created_at,
        )
    for sid in ended:
        await flow.auth.revoke_session(sid, tenant.organization_id)
    return out


@router.get("/settings", responses=ERRORS)
async def get_settings(tenant: Read, flow: OAuthFlowDep) -> schemas.OAuthSettingsOut:
    async with tenant.session() as session:
        row = await clients.settings_of(session)
    return schemas.OAuthSettingsOut(
        dynamic_registration=row.dynamic_registration,
        metadata_documents=row.metadata_documents,
        issuer=flow.issuer(tenant.organization_id),
    )


@router.put("/settings", responses=ERRORS)
async def put_settings(
    body: schemas.OAuthSettingsBody, tenant: Update, flow: OAuthFlowDep
) -> schemas.OAuthSettingsOut:
    """Turn dynamic client registration and Client ID Metadata Documents on or off."""
    async with tenant.session() as session:
        await clients.update_settings(
            session,
            tenant.organization_id,
            tenant.actor,
            dynamic_registration=body.dynamic_registration,
            metadata_documents=body.metadata_documents,
        )
    return schemas.OAuthSettingsOut(**body.model_dump(), issuer=flow.issuer(tenant.organization_id))
