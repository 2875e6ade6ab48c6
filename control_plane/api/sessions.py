"""Browser sessions (cookie + CSRF), the caller's session list, and password change."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from control_plane.api.auth import verify_login
from control_plane.api.deps import (
    AuthenticatorDep,
    DatabaseDep,
    KeyValueDep,
    PrincipalDep,
    SecondFactorDep,
    SettingsDep,
    client_ip,
    client_of,
)
from control_plane.errors import Forbidden
from control_plane.schemas.identity import LoginRequest
from control_plane.schemas.mfa import BrowserSession, PasswordChange, SessionOut
from control_plane.services import ratelimit, sessions
from control_plane.services.audit import Actor
from control_plane.services.principal import Principal
from policy.runtime.logs import request_id_var

router = APIRouter(prefix="/api/v1", tags=["sessions"])
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 422: {}, 429: {}}


def get_user(principal: PrincipalDep) -> Principal:
    if principal.kind != "user" or principal.session_id is None:
        raise Forbidden("sessions and passwords belong to people; an API key has neither")
    return principal


UserDep = Annotated[Principal, Depends(get_user)]


def _actor(principal: Principal, request: Request) -> Actor:
    return Actor.of(principal, client_ip(request), request_id_var.get())


@router.post("/auth/session", responses=ERRORS)
async def open_browser_session(
    body: LoginRequest,
    request: Request,
    kv: KeyValueDep,
    settings: SettingsDep,
    response: Response,
    db: DatabaseDep,
    second_factor: SecondFactorDep,
) -> BrowserSession:
    """Log in for a browser: sets the HttpOnly `kaizen_session` cookie and the readable
    `kaizen_csrf` cookie, whose value every write must echo in `X-CSRF-Token`."""
    user_id, org_id = await verify_login(body, request, db, second_factor)
    login = await sessions.open_browser_session(
        db, kv, settings, user_id, org_id, client_of(request)
    )
    secure = settings.session_cookie_secure
    for name, value, http_only in (
        (sessions.SESSION_COOKIE, login.cookie, True),
        (sessions.CSRF_COOKIE, login.csrf_token, False),
    ):
        response.set_cookie(
            name,
            value,
            max_age=login.ttl,
            path="/",
            secure=secure,
            httponly=http_only,
            samesite="strict",
        )
    return BrowserSession(
        user_id=user_id, organization_id=org_id, csrf_token=login.csrf_token, expires_in=login.ttl
    )


@router.delete("/auth/session", status_code=204, responses=ERRORS)
async def close_browser_session(user: UserDep, auth: AuthenticatorDep) -> Response:
    """Log this browser out and clear its cookies."""
    assert user.session_id is not None
    await auth.revoke_session(user.session_id)
    response = Response(status_code=204)
    for name in (sessions.SESSION_COOKIE, sessions.CSRF_COOKIE):
        response.delete_cookie(name, path="/", samesite="strict")
    return response


@router.get("/me/sessions", responses=ERRORS)
async def list_sessions(user: UserDep, kv: KeyValueDep, db: DatabaseDep) -> list[SessionOut]:
    """Your live sessions in this organisation: token logins and browsers."""
    async with db.session(user.organization_id) as session:
        return await sessions.list_sessions(session, kv, user)


@router.delete("/me/sessions/{session_id}", status_code=204, responses=ERRORS)
async def revoke_session(
    session_id: uuid.UUID,
    user: UserDep,
    request: Request,
    kv: KeyValueDep,
    db: DatabaseDep,
    auth: AuthenticatorDep,
) -> Response:
    async with db.session(user.organization_id) as session:
        await sessions.revoke(session, kv, auth, user, _actor(user, request), session_id)
    return Response(status_code=204)


@router.delete("/me/sessions", responses=ERRORS)
async def revoke_other_sessions(
    user: UserDep, request: Request, kv: KeyValueDep, db: DatabaseDep, auth: AuthenticatorDep
) -> dict[str, int]:
    """End all your sessions in this organisation except the one you are using."""
    async with db.session(user.organization_id) as session:
        count = await sessions.revoke_others(session, kv, auth, user, _actor(user, request))
    return {"revoked": count}


@router.post("/me/password", status_code=204, responses=ERRORS)
async def change_password(
    body: PasswordChange,
    user: UserDep,
    request: Request,
    kv: KeyValueDep,
    settings: SettingsDep,
    db: DatabaseDep,
    auth: AuthenticatorDep,
) -> Response:
    """Change your password; every session and refresh token you have ends, this one too."""
    await ratelimit.hit(
        kv,
        f"password:{user.id}",
        limit=settings.login_attempts_per_window,
        window=settings.login_window_seconds,
        what="password change attempts",
    )
    await sessions.change_password(
        db, kv, auth, user, _actor(user, request), body.current, body.new
    )
    return Response(status_code=204)
