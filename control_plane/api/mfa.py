"""TOTP enrolment and removal for the caller, and the organisation's MFA rule."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from control_plane.api.deps import (
    AuthenticatorDep,
    DatabaseDep,
    KeyValueDep,
    PrincipalDep,
    SecondFactorDep,
    SettingsDep,
    Tenant,
    bearer,
    client_ip,
    client_of,
    get_principal,
    requires,
)
from control_plane.errors import Forbidden, Unauthenticated
from control_plane.schemas.identity import TokenResponse
from control_plane.schemas.mfa import (
    MfaCode,
    MfaPolicyOut,
    MfaPolicyUpdate,
    MfaStatus,
    TotpConfirm,
    TotpConfirmed,
    TotpEnrolment,
    TotpStart,
)
from control_plane.services import identity, mfa, sessions
from control_plane.services.audit import Actor
from control_plane.services.principal import Principal
from policy.runtime.logs import organization_id_var, request_id_var

router = APIRouter(prefix="/api/v1", tags=["mfa"])
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 409: {}, 422: {}, 429: {}}


@dataclass(frozen=True)
class Enroller:
    """A user setting up TOTP: logged in, or holding the enrolment token a login gave them."""

    user_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    actor: Actor
    enrolment_token: str | None
    via_sso: bool


def _user(principal: Principal) -> Principal:
    if principal.kind != "user":
        raise Forbidden("MFA belongs to people; an API key has none")
    return principal


async def get_enroller(
    request: Request,
    db: DatabaseDep,
    auth: AuthenticatorDep,
    second_factor: SecondFactorDep,
    kv: KeyValueDep,
    settings: SettingsDep,
) -> Enroller:
    credential = bearer(request)
    if not credential.startswith(mfa.ENROLMENT_PREFIX):
        principal = _user(await get_principal(request, auth, kv, settings))
        actor = Actor.of(principal, client_ip(request), request_id_var.get())
        via_sso = await second_factor.is_sso_session(principal.session_id)
        return Enroller(
            principal.id, principal.organization_id, principal.label, actor, None, via_sso
        )
    enrolment = await second_factor.resolve_enrolment_token(credential)
    organization_id_var.set(str(enrolment.organization_id))
    async with db.session(enrolment.organization_id) as session:
        email = await identity.email_of(session, enrolment.user_id)
    if email is None:
        raise Unauthenticated("this account no longer exists")
    actor = Actor("user", str(enrolment.user_id), email, client_ip(request), request_id_var.get())
    return Enroller(
        enrolment.user_id, enrolment.organization_id, email, actor, credential, enrolment.via_sso
    )


EnrollerDep = Annotated[Enroller, Depends(get_enroller)]
ReadPolicy = Annotated[Tenant, Depends(requires("organization", "read"))]
UpdatePolicy = Annotated[Tenant, Depends(requires("organization", "configure_mfa"))]


@router.get("/me/mfa", responses=ERRORS)
async def mfa_status(
    principal: PrincipalDep, db: DatabaseDep, second_factor: SecondFactorDep
) -> MfaStatus:
    user = _user(principal)
    async with db.session(user.organization_id) as session:
        return await second_factor.status(session, user.id)


@router.post("/me/mfa/totp", status_code=201, responses=ERRORS)
async def start_totp(
    enroller: EnrollerDep,
    db: DatabaseDep,
    second_factor: SecondFactorDep,
    body: TotpStart | None = None,
) -> TotpEnrolment:
    """Start TOTP enrolment: scan `qr_svg` (or type `secret`), then confirm with a code.
    To replace an active TOTP, send `code`: a current code or a recovery code."""
    await second_factor.check_enroller(enroller.user_id, enroller.organization_id, enroller.via_sso)
    current = body.code if body is not None else None
    async with db.session(enroller.organization_id) as session:
        return await second_factor.start_enrolment(
            session, enroller.user_id, enroller.email, current
        )


@router.post("/me/mfa/totp/confirm", responses=ERRORS)
async def confirm_totp(
    body: TotpConfirm,
    request: Request,
    enroller: EnrollerDep,
    db: DatabaseDep,
    auth: AuthenticatorDep,
    second_factor: SecondFactorDep,
) -> TotpConfirmed:
    """Activate TOTP with its first code; returns ten single-use recovery codes, once."""
    await second_factor.check_enroller(enroller.user_id, enroller.organization_id, enroller.via_sso)
    async with db.session(enroller.organization_id) as session:
        codes = await second_factor.confirm_enrolment(
            session, enroller.actor, enroller.organization_id, enroller.user_id, body.code
        )
    tokens = None
    if enroller.enrolment_token:
        # Password and now a code are proven: the enrolling login becomes a session.
        await second_factor.forget_enrolment_token(enroller.enrolment_token)
        pair = await auth.issue(
            enroller.user_id, enroller.organization_id, client=client_of(request)
        )
        tokens = TokenResponse(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
            user_id=pair.user_id,
            organization_id=pair.organization_id,
        )
    return TotpConfirmed(recovery_codes=codes, tokens=tokens)


@router.delete("/me/mfa/totp", status_code=204, responses=ERRORS)
async def disable_totp(
    body: MfaCode,
    request: Request,
    principal: PrincipalDep,
    db: DatabaseDep,
    second_factor: SecondFactorDep,
) -> Response:
    """Turn TOTP off, proven with a current code or a recovery code."""
    user = _user(principal)
    actor = Actor.of(user, client_ip(request), request_id_var.get())
    async with db.session(user.organization_id) as session:
        await second_factor.disable(session, actor, user.organization_id, user.id, body.code)
    return Response(status_code=204)


@router.get("/organization/mfa", responses=ERRORS)
async def get_mfa_policy(tenant: ReadPolicy) -> MfaPolicyOut:
    async with tenant.session() as session:
        return await mfa.get_policy(session)


@router.put("/organization/mfa", responses=ERRORS)
async def put_mfa_policy(
    body: MfaPolicyUpdate,
    kv: KeyValueDep,
    tenant: UpdatePolicy,
    auth: AuthenticatorDep,
) -> MfaPolicyOut:
    """Roles that must have MFA. Their members without it are logged out here now, and
    their next login yields only an enrolment token until they have enrolled."""
    async with tenant.session() as session:
        policy = await mfa.set_policy(
            session, tenant.actor, tenant.organization_id, list(body.required_roles)
        )
        missing = await mfa.members_without_mfa(session, policy.required_roles)
        await sessions.revoke_members(session, kv, auth, missing)
    return policy
