from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from control_plane import observability
from control_plane.api.deps import (
    AuthenticatorDep,
    DatabaseDep,
    PrincipalDep,
    SecondFactorDep,
    client_ip,
    client_of,
    get_kv,
    get_settings,
)
from control_plane.errors import RateLimited
from control_plane.schemas.identity import (
    LoginRequest,
    RefreshRequest,
    SignupRequest,
    TokenResponse,
)
from control_plane.services import identity, ratelimit, sso
from control_plane.services.auth import TokenPair
from control_plane.services.mfa import MfaEnrolmentRequired
from policy.runtime.logs import request_id_var

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        user_id=pair.user_id,
        organization_id=pair.organization_id,
    )


async def _limit(request: Request, key: str, what: str) -> None:
    settings = get_settings(request)
    try:
        await ratelimit.hit(
            get_kv(request),
            key,
            limit=settings.login_attempts_per_window,
            window=settings.login_window_seconds,
            what=what,
        )
    except RateLimited:
        observability.security_event("login_lockout")
        raise


@router.post("/signup", status_code=201, responses={409: {}, 422: {}, 429: {}})
async def signup(
    body: SignupRequest, request: Request, db: DatabaseDep, auth: AuthenticatorDep
) -> TokenResponse:
    """Create an organisation with you as its owner."""
    ip = client_ip(request)
    await _limit(request, f"signup:{ip}", "sign-ups from this address")
    plan = get_settings(request).default_plan
    user_id, org_id = await identity.signup(db, body, ip, request_id_var.get(), plan=plan)
    return _tokens(await auth.issue(user_id, org_id, client=client_of(request)))


async def verify_login(
    body: LoginRequest, request: Request, db: DatabaseDep, mfa: SecondFactorDep
) -> tuple[uuid.UUID, uuid.UUID]:
    """Password, then the second factor: (user id, organisation id) or the reason why not."""
    ip = client_ip(request)
    email = identity.normalize_email(body.email)
    await _limit(request, f"login:{ip}:{email}", "login attempts for this account")
    user_id, org_id = await identity.login(db, body)
    await sso.check_password_login(db, user_id, org_id)
    await mfa.check_login(user_id, org_id, body.totp)
    await ratelimit.reset(get_kv(request), f"login:{ip}:{email}")
    return user_id, org_id


@router.post("/login", responses={401: {}, 403: {}, 422: {}, 429: {}})
async def login(
    body: LoginRequest,
    request: Request,
    db: DatabaseDep,
    auth: AuthenticatorDep,
    mfa: SecondFactorDep,
) -> TokenResponse:
    """401 `mfa_required` asks for `totp`; 403 `mfa_enrolment_required` carries an
    enrolment token when your role needs MFA you have not set up yet."""
    user_id, org_id = await verify_login(body, request, db, mfa)
    return _tokens(await auth.issue(user_id, org_id, client=client_of(request)))


@router.post("/refresh", responses={401: {}, 403: {}, 422: {}})
async def refresh(
    body: RefreshRequest, auth: AuthenticatorDep, mfa: SecondFactorDep
) -> TokenResponse:
    """Trade a refresh token for a new pair; each refresh token works once."""
    pair = await auth.refresh(body.refresh_token)
    if await mfa.enrolment_missing(pair.user_id, pair.organization_id):
        # The organisation started requiring MFA for this role: no more tokens until enrolled.
        await auth.revoke_session(pair.session_id)
        raise MfaEnrolmentRequired("your role now requires MFA: log in again to enrol")
    return _tokens(pair)


@router.post("/logout", status_code=204, responses={401: {}})
async def logout(principal: PrincipalDep, auth: AuthenticatorDep) -> Response:
    """End this session: its refresh token and access tokens stop working now."""
    if principal.session_id:
        await auth.revoke_session(principal.session_id)
    return Response(status_code=204)
