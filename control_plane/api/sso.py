"""Single sign-on: providers (admin), email-domain discovery, OIDC and SAML login flows,
and the single-use code the UI trades for tokens (tokens never travel in a URL)."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import EmailStr

from control_plane.api.deps import (
    AuthenticatorDep,
    Cursor,
    DatabaseDep,
    Limit,
    SecondFactorDep,
    SettingsDep,
    Tenant,
    client_ip,
    client_of,
    get_kv,
    get_secrets,
    requires,
)
from control_plane.api.deps import (
    get_settings as settings_of,
)
from control_plane.db.base import utcnow
from control_plane.db.models import SsoProvider
from control_plane.errors import Invalid, Unauthenticated
from control_plane.schemas import sso as schemas
from control_plane.schemas.base import Page
from control_plane.schemas.identity import TokenResponse
from control_plane.services import ratelimit, sso
from control_plane.services.auth import TokenPair
from control_plane.services.kv import KeyValueStore
from control_plane.services.mfa import MfaInvalid, MfaRequired
from control_plane.services.secrets import SecretStore
from control_plane.services.sso import oidc, provision, saml
from policy.runtime.logs import request_id_var

router = APIRouter()

Read = Annotated[Tenant, Depends(requires("sso", "read"))]
Create = Annotated[Tenant, Depends(requires("sso", "create"))]
Update = Annotated[Tenant, Depends(requires("sso", "update"))]
Delete = Annotated[Tenant, Depends(requires("sso", "delete"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}
FLOW_ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 422: {}, 503: {}}
# Leeway past an assertion's NotOnOrAfter that its id is remembered (python3-saml's drift).
_ASSERTION_DRIFT = 300


def _base_url(request: Request) -> str:
    return str(settings_of(request).control_plane_url).rstrip("/")


def _secrets(request: Request) -> SecretStore:
    store: SecretStore = get_secrets(request)
    return store


def _kv(request: Request) -> KeyValueStore:
    kv: KeyValueStore = get_kv(request)
    return kv


# -- providers (owners and admins) ----------------------------------------------------------


@router.get("/api/v1/sso/providers", tags=["sso"], responses=ERRORS)
async def list_providers(
    request: Request, tenant: Read, cursor: Cursor = None, limit: Limit = 100
) -> Page[schemas.Provider]:
    async with tenant.session() as session:
        items, next_cursor = await sso.list_providers(session, cursor, limit, _base_url(request))
    return Page(items=items, next_cursor=next_cursor)


@router.post("/api/v1/sso/providers", status_code=201, tags=["sso"], responses=ERRORS)
async def create_provider(
    body: schemas.ProviderCreate, request: Request, tenant: Create
) -> schemas.Provider:
    """Add an OIDC or SAML identity provider; `client_secret` is write-only. Its
    `email_domains` must be domains this organisation verified (POST /api/v1/domains)."""
    async with tenant.session() as session:
        return await sso.create_provider(
            session,
            _secrets(request),
            tenant.organization_id,
            tenant.actor,
            body,
            _base_url(request),
        )


@router.get("/api/v1/sso/providers/{provider_id}", tags=["sso"], responses=ERRORS)
async def get_provider(provider_id: uuid.UUID, request: Request, tenant: Read) -> schemas.Provider:
    async with tenant.session() as session:
        return await sso.show_provider(session, provider_id, _base_url(request))


@router.patch("/api/v1/sso/providers/{provider_id}", tags=["sso"], responses=ERRORS)
async def update_provider(
    provider_id: uuid.UUID, body: schemas.ProviderUpdate, request: Request, tenant: Update
) -> schemas.Provider:
    async with tenant.session() as session:
        return await sso.update_provider(
            session,
            _secrets(request),
            tenant.organization_id,
            tenant.actor,
            provider_id,
            body,
            _base_url(request),
        )


@router.delete(
    "/api/v1/sso/providers/{provider_id}", status_code=204, tags=["sso"], responses=ERRORS
)
async def delete_provider(provider_id: uuid.UUID, request: Request, tenant: Delete) -> Response:
    async with tenant.session() as session:
        await sso.delete_provider(
            session, _secrets(request), tenant.organization_id, tenant.actor, provider_id
        )
    return Response(status_code=204)


@router.get("/api/v1/sso/settings", tags=["sso"], responses=ERRORS)
async def get_settings(tenant: Read) -> schemas.SsoSettingsOut:
    async with tenant.session() as session:
        return await sso.get_settings(session)


@router.put("/api/v1/sso/settings", tags=["sso"], responses=ERRORS)
async def put_settings(body: schemas.SsoSettingsUpdate, tenant: Update) -> schemas.SsoSettingsOut:
    """Require SSO for members; the listed owners may still use their password (break-glass)."""
    async with tenant.session() as session:
        return await sso.put_settings(session, tenant.organization_id, tenant.actor, body)


# -- public: discovery and the code exchange ------------------------------------------------


@router.get("/api/v1/auth/sso/discover", tags=["auth"], responses={404: {}, 422: {}})
async def discover(
    db: DatabaseDep, request: Request, email: Annotated[EmailStr, Query(max_length=320)]
) -> schemas.Discovery:
    """Email-domain routing: which identity provider signs this address in."""
    provider = await sso.discover(db, email)
    return schemas.Discovery(
        provider_id=provider.id,
        type=provider.type,
        name=provider.name,
        login_url=str(sso.urls(_base_url(request), provider)["login_url"]),
    )


@router.post("/api/v1/auth/sso/exchange", tags=["auth"], responses={401: {}, 403: {}, 422: {}})
async def exchange(
    body: schemas.ExchangeRequest,
    request: Request,
    auth: AuthenticatorDep,
    mfa: SecondFactorDep,
) -> TokenResponse:
    """Trade the single-use code of a finished SSO login for the usual token pair.

    The organisation's second-factor rules apply as they do to password logins: a member
    with TOTP (or whose role requires it) must send `totp`; the 401 that asks for it
    carries a fresh single-use `retry_code`, so the IdP round trip is not repeated.
    """
    user_id, org_id, provider_id = await sso.redeem_code(_kv(request), body.code)
    try:
        await mfa.check_login(user_id, org_id, body.totp, via_sso=True)
    except (MfaRequired, MfaInvalid) as exc:
        retry = await sso.issue_code(_kv(request), user_id, org_id, provider_id)
        raise type(exc)(exc.message, details=[{"field": "totp", "retry_code": retry}]) from None
    pair = await auth.issue(user_id, org_id, client=client_of(request))
    # Remembered for the session's life: an SSO session may not enrol a shared account's TOTP.
    await mfa.mark_sso_session(pair.session_id)
    return _tokens(pair)


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        user_id=pair.user_id,
        organization_id=pair.organization_id,
    )


async def _complete(
    request: Request, db: DatabaseDep, provider: SsoProvider, identity: sso.ExternalIdentity
) -> RedirectResponse:
    actor = sso.login_actor(provider, client_ip(request), request_id_var.get())
    elsewhere = await provision.memberships_elsewhere(db, provider, identity)
    try:
        async with db.session(provider.organization_id) as session:
            user_id = await provision.provision(session, provider, identity, actor, elsewhere)
    except provision.SsoLinkRequired as refused:
        if refused.can_link:
            link_code = secrets.token_urlsafe(32)
            record = {
                "provider": str(provider.id),
                "user": str(refused.user_id),
                "subject": identity.subject,
                "email": identity.email,
                "display_name": identity.display_name,
                "groups": list(identity.groups),
            }
            await sso.remember(_kv(request), "link", link_code, record, sso.STATE_TTL)
            refused.details = [
                {"field": "email", "link_code": link_code, "link_url": "/api/v1/auth/sso/link"}
            ]
        raise
    code = await sso.issue_code(_kv(request), user_id, provider.organization_id, provider.id)
    response = RedirectResponse(f"/#/sso?code={quote(code)}", status_code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.post(
    "/api/v1/auth/sso/link", tags=["auth"], responses={401: {}, 403: {}, 404: {}, 422: {}, 429: {}}
)
async def link(
    body: schemas.LinkRequest,
    request: Request,
    settings: SettingsDep,
    db: DatabaseDep,
    auth: AuthenticatorDep,
    mfa: SecondFactorDep,
) -> TokenResponse:
    """Link an existing account to the identity provider that just refused to attach it,
    proven with the account's password (and its second factor, when it has one)."""
    kv = _kv(request)
    record = await sso.peek(kv, "link", body.link_code)
    if record is None:
        raise Unauthenticated("the link code is invalid, expired or already used")
    user_id = uuid.UUID(record["user"])
    limit_key = f"sso-link:{user_id}"
    await ratelimit.hit(
        kv,
        limit_key,
        limit=settings.login_attempts_per_window,
        window=settings.login_window_seconds,
        what="link attempts for this account",
    )
    provider = await sso.provider_by_id(db, uuid.UUID(record["provider"]))
    await provision.check_account_password(db, user_id, body.password)
    org_id = provider.organization_id
    await mfa.check_login(user_id, org_id, body.totp)
    if await sso.take(kv, "link", body.link_code) is None:
        raise Unauthenticated("the link code is invalid, expired or already used")
    await ratelimit.reset(kv, limit_key)
    external = sso.ExternalIdentity(
        subject=record["subject"],
        email=record["email"],
        display_name=record["display_name"],
        groups=tuple(record["groups"]),
    )
    actor = sso.login_actor(provider, client_ip(request), request_id_var.get())
    elsewhere = await provision.memberships_elsewhere(db, provider, external)
    async with db.session(org_id) as session:
        await provision.provision(
            session, provider, external, actor, elsewhere, proven_user=user_id
        )
    if await mfa.enrolment_missing(user_id, org_id):
        await mfa.check_login(user_id, org_id, None)  # raises with an enrolment token
    return _tokens(await auth.issue(user_id, org_id, client=client_of(request)))


# -- OIDC ----------------------------------------------------------------------------------


async def _client_secret(request: Request, provider: SsoProvider) -> str | None:
    if not provider.has_client_secret:
        return None
    return await _secrets(request).get(
        provider.organization_id, sso.client_secret_name(provider.id)
    )


@router.get(
    "/api/v1/auth/oidc/{provider_id}/login",
    status_code=302,
    tags=["auth"],
    responses=FLOW_ERRORS,
    response_class=RedirectResponse,
)
async def oidc_login(
    provider_id: uuid.UUID, request: Request, settings: SettingsDep, db: DatabaseDep
) -> RedirectResponse:
    """Start an OpenID Connect login: a redirect to the IdP (code flow, PKCE S256)."""
    provider = await sso.provider_for_login(db, provider_id, "oidc")
    redirect_uri = str(sso.urls(_base_url(request), provider)["redirect_uri"])
    url = await oidc.begin(
        _kv(request),
        provider,
        await _client_secret(request, provider),
        redirect_uri,
        settings.outbound_guard,
    )
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@router.get(
    "/api/v1/auth/oidc/{provider_id}/callback",
    status_code=302,
    tags=["auth"],
    responses=FLOW_ERRORS,
    response_class=RedirectResponse,
)
async def oidc_callback(
    provider_id: uuid.UUID,
    request: Request,
    settings: SettingsDep,
    db: DatabaseDep,
    state: Annotated[str, Query(min_length=1, max_length=512)],
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> RedirectResponse:
    """Where the IdP sends the browser back: validate, provision (JIT), hand over a code."""
    provider = await sso.provider_for_login(db, provider_id, "oidc")
    record = await oidc.take_state(_kv(request), provider, state)
    if error:
        raise Unauthenticated(f"the identity provider refused the login: {error}")
    if not code:
        raise Invalid("code: required", details=[{"field": "code", "message": "required"}])
    redirect_uri = str(sso.urls(_base_url(request), provider)["redirect_uri"])
    identity = await oidc.finish(
        provider,
        await _client_secret(request, provider),
        redirect_uri,
        code,
        record,
        settings.outbound_guard,
    )
    return await _complete(request, db, provider, identity)


# -- SAML ----------------------------------------------------------------------------------


@router.get(
    "/api/v1/auth/saml/{provider_id}/metadata",
    tags=["auth"],
    responses={404: {}},
    response_class=Response,
)
async def saml_metadata(provider_id: uuid.UUID, request: Request, db: DatabaseDep) -> Response:
    """Our SP metadata for this provider: entity id, ACS URL, signing certificate."""
    provider = await sso.provider_for_login(db, provider_id, "saml")
    sp_key = await _secrets(request).get(provider.organization_id, sso.sp_key_name(provider.id))
    xml = saml.sp_metadata(provider, sp_key, sso.urls(_base_url(request), provider))
    return Response(xml, media_type="application/samlmetadata+xml")


@router.get(
    "/api/v1/auth/saml/{provider_id}/login",
    status_code=302,
    tags=["auth"],
    responses=FLOW_ERRORS,
    response_class=RedirectResponse,
)
async def saml_login(provider_id: uuid.UUID, request: Request, db: DatabaseDep) -> RedirectResponse:
    """Start a SAML login: a signed AuthnRequest by the HTTP-Redirect binding."""
    provider = await sso.provider_for_login(db, provider_id, "saml")
    sp_key = await _secrets(request).get(provider.organization_id, sso.sp_key_name(provider.id))
    url, request_id = saml.begin(provider, sp_key, sso.urls(_base_url(request), provider))
    await sso.remember(
        _kv(request), "saml-request", request_id, {"provider": str(provider.id)}, sso.STATE_TTL
    )
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@router.post(
    "/api/v1/auth/saml/{provider_id}/acs",
    status_code=302,
    tags=["auth"],
    responses=FLOW_ERRORS,
    response_class=RedirectResponse,
)
async def saml_acs(provider_id: uuid.UUID, request: Request, db: DatabaseDep) -> RedirectResponse:
    """Assertion consumer (HTTP-POST binding): validate, provision (JIT), hand over a code."""
    provider = await sso.provider_for_login(db, provider_id, "saml")
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    saml_response = (form.get("SAMLResponse") or [""])[0]
    if not saml_response:
        raise Invalid(
            "SAMLResponse: required", details=[{"field": "SAMLResponse", "message": "required"}]
        )
    request_id = saml.in_response_to(saml_response)
    pending = await sso.take(_kv(request), "saml-request", request_id)
    if pending is None or pending.get("provider") != str(provider.id):
        raise Unauthenticated("the SAML response answers no login we started, or one already used")
    assertion = saml.finish(
        provider, sso.urls(_base_url(request), provider), saml_response, request_id
    )
    expires = assertion.not_on_or_after or utcnow() + timedelta(seconds=sso.STATE_TTL)
    ttl = int((expires - utcnow()).total_seconds()) + _ASSERTION_DRIFT
    if not await sso.first_sighting(
        _kv(request), "saml-assertion", f"{provider.id}:{assertion.assertion_id}", ttl
    ):
        raise Unauthenticated("SAML response rejected: this assertion was already used")
    identity = sso.ExternalIdentity(
        subject=assertion.subject,
        email=assertion.email,
        display_name=assertion.display_name,
        groups=assertion.groups,
    )
    return await _complete(request, db, provider, identity)
