"""A user's sessions: token-pair sessions and browser (cookie) sessions.

Each login is a row in `user_sessions` (who, from where, since when: the registry that
listing and revoke-all read, so none is missed) plus live state in the key-value store
(Redis in production): `session:{sid}` while the session lives, `revoked:{sid}` after,
`seen:{sid}` for the last request. A browser session is an opaque `HttpOnly` cookie
whose hash keys `browser:{hash}`; writes made with it must echo the readable
`kaizen_csrf` cookie in `X-CSRF-Token`, and that value must be the session's own
(double submit, bound to the session so a planted cookie does not pass).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import RevokedSession, User, UserSession
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Forbidden, Invalid, NotFound, Unauthenticated
from control_plane.schemas.mfa import SessionOut
from control_plane.services import audit, passwords
from control_plane.services.audit import Actor
from control_plane.services.kv import KeyValueStore
from control_plane.services.principal import Principal
from control_plane.settings import Settings

if TYPE_CHECKING:
    from control_plane.services.auth import Authenticator

SESSION_COOKIE = "kaizen_session"
CSRF_COOKIE = "kaizen_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_USER_AGENT_MAX = 512


class CsrfRejected(Forbidden):
    code = "csrf_failed"


@dataclass(frozen=True)
class Client:
    """Where a login came from, for the session list."""

    user_agent: str | None = None
    source_ip: str | None = None


@dataclass(frozen=True)
class CookieRequest:
    """What cookie authentication needs from the HTTP request."""

    method: str
    session_cookie: str
    csrf_cookie: str | None
    csrf_header: str | None


@dataclass(frozen=True)
class BrowserLogin:
    cookie: str
    csrf_token: str
    session_id: str
    ttl: int


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def register(
    db: Database,
    sid: str,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    kind: str,
    client: Client | None,
) -> None:
    client = client or Client()
    agent = (client.user_agent or "")[:_USER_AGENT_MAX] or None
    async with db.session(organization_id) as session:
        session.add(
            UserSession(
                sid=sid, user_id=user_id, kind=kind, user_agent=agent, source_ip=client.source_ip
            )
        )


async def touch(kv: KeyValueStore, settings: Settings, sid: str) -> None:
    ttl = max(settings.refresh_token_ttl_seconds, settings.browser_session_ttl_seconds)
    await kv.set(f"seen:{sid}", utcnow().isoformat(), ttl=ttl)


# -- browser sessions ---------------------------------------------------------------------


async def open_browser_session(
    db: Database,
    kv: KeyValueStore,
    settings: Settings,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    client: Client,
) -> BrowserLogin:
    sid = secrets.token_urlsafe(16)
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    ttl = settings.browser_session_ttl_seconds
    await register(db, sid, user_id, organization_id, "cookie", client)
    digest = _sha256(cookie)
    record = {"user": str(user_id), "org": str(organization_id), "sid": sid, "csrf": csrf}
    await kv.set(f"browser:{digest}", json.dumps(record), ttl=ttl)
    # The same key a token session uses, so `Authenticator.revoke_session` ends either kind.
    await kv.set(f"session:{sid}", digest, ttl=ttl)
    await touch(kv, settings, sid)
    return BrowserLogin(cookie, csrf, sid, ttl)


async def authenticate_cookie(
    auth: Authenticator, kv: KeyValueStore, request: CookieRequest
) -> Principal:
    digest = _sha256(request.session_cookie)
    record = await kv.get(f"browser:{digest}")
    if record is None:
        raise Unauthenticated("the session cookie is invalid or expired; log in again")
    data = json.loads(record)
    sid = data["sid"]
    if await kv.get(f"session:{sid}") != digest:
        raise Unauthenticated("session has been revoked")
    if request.method.upper() not in SAFE_METHODS:
        _check_csrf(request, data["csrf"])
    return await auth.session_principal(uuid.UUID(data["user"]), uuid.UUID(data["org"]), sid)


def _check_csrf(request: CookieRequest, expected: str) -> None:
    header, cookie = request.csrf_header or "", request.csrf_cookie or ""
    if not header or not cookie:
        raise CsrfRejected(
            f"a write with a session cookie needs the {CSRF_COOKIE} cookie echoed in {CSRF_HEADER}"
        )
    matches = hmac.compare_digest(header.encode(), cookie.encode())
    if not (matches and hmac.compare_digest(header.encode(), expected.encode())):
        raise CsrfRejected(f"{CSRF_HEADER} does not match this session's CSRF token")


# -- listing and revoking -----------------------------------------------------------------


async def list_sessions(
    session: AsyncSession, kv: KeyValueStore, principal: Principal
) -> list[SessionOut]:
    """The caller's live sessions in this organisation, newest first."""
    rows = (
        await session.scalars(
            select(UserSession)
            .where(UserSession.user_id == principal.id)
            .order_by(UserSession.created_at.desc())
        )
    ).all()
    live: list[UserSession] = []
    ended: list[UserSession] = []
    for row in rows:
        (live if await kv.get(f"session:{row.sid}") else ended).append(row)
    if ended:  # expired or revoked elsewhere: the registry forgets them lazily
        await session.execute(
            delete(UserSession).where(UserSession.id.in_([row.id for row in ended]))
        )
    out = []
    for row in live:
        seen = await kv.get(f"seen:{row.sid}")
        out.append(
            SessionOut(
                id=row.id,
                kind="cookie" if row.kind == "cookie" else "token",
                created_at=row.created_at,
                last_seen_at=_parse_time(seen),
                user_agent=row.user_agent,
                source_ip=row.source_ip,
                current=row.sid == principal.session_id,
            )
        )
    return out


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def revoke(
    session: AsyncSession,
    kv: KeyValueStore,
    auth: Authenticator,
    principal: Principal,
    actor: Actor,
    session_id: uuid.UUID,
) -> None:
    row = await session.scalar(
        select(UserSession).where(UserSession.id == session_id, UserSession.user_id == principal.id)
    )
    if row is None:
        raise NotFound("no such session")
    await _end(kv, auth, row)
    await session.delete(row)
    await audit.record(
        session, principal.organization_id, actor, "session.revoke", "session", row.id
    )


async def revoke_others(
    session: AsyncSession,
    kv: KeyValueStore,
    auth: Authenticator,
    principal: Principal,
    actor: Actor,
) -> int:
    """End every session of the caller in this organisation but the one making the call."""
    rows = (
        await session.scalars(
            select(UserSession).where(
                UserSession.user_id == principal.id, UserSession.sid != (principal.session_id or "")
            )
        )
    ).all()
    for row in rows:
        await _end(kv, auth, row)
        await session.delete(row)
    await audit.record(
        session,
        principal.organization_id,
        actor,
        "session.revoke_others",
        "user",
        principal.id,
        revoked=len(rows),
    )
    return len(rows)


async def revoke_members(
    session: AsyncSession, kv: KeyValueStore, auth: Authenticator, user_ids: list[uuid.UUID]
) -> int:
    """End the sessions these members have in the session's organisation."""
    if not user_ids:
        return 0
    rows = (
        await session.scalars(select(UserSession).where(UserSession.user_id.in_(user_ids)))
    ).all()
    for row in rows:
        await _end(kv, auth, row)
        await session.delete(row)
    return len(rows)


async def revoke_everywhere(
    db: Database, kv: KeyValueStore, auth: Authenticator, user_id: uuid.UUID
) -> int:
    """End every session and refresh token of a user in every organisation."""
    # A person's sessions span their organisations; this one place reads across them.
    async with db.session(SYSTEM) as session:
        rows = (
            await session.scalars(select(UserSession).where(UserSession.user_id == user_id))
        ).all()
        for row in rows:
            await _end(kv, auth, row)
        await session.execute(delete(UserSession).where(UserSession.user_id == user_id))
    return len(rows)


async def _end(kv: KeyValueStore, auth: Authenticator, row: UserSession) -> None:
    if row.kind == "cookie":
        digest = await kv.get(f"session:{row.sid}")
        if digest:
            await kv.delete(f"browser:{digest}")
    await auth.revoke_session(row.sid, row.organization_id)
    await kv.delete(f"seen:{row.sid}")


# -- password change ----------------------------------------------------------------------


async def change_password(
    db: Database,
    kv: KeyValueStore,
    auth: Authenticator,
    principal: Principal,
    actor: Actor,
    current: str,
    new: str,
) -> int:
    """Set a new password and end every session the user has; returns how many ended."""
    async with db.session(principal.organization_id) as session:
        user = await session.scalar(select(User).where(User.id == principal.id))
        if user is None or not passwords.verify_password(user.password_hash, current):
            raise Forbidden("the current password is wrong", details=[{"field": "current"}])
        try:
            passwords.check_strength(new, email=user.email)
        except Invalid as error:
            details = [{"field": "new", "message": error.message}]
            raise Invalid(error.message, details=details) from None
        user.password_hash = passwords.hash_password(new)
        await audit.record(
            session, principal.organization_id, actor, "user.password_change", "user", user.id
        )
    return await revoke_everywhere(db, kv, auth, principal.id)


# -- revoked sessions in the bundle -------------------------------------------------------


async def live_revoked_sids(session: AsyncSession, now: datetime) -> list[str]:
    """Sids of this organisation's revoked sessions whose access tokens may still be live."""
    sids = await session.scalars(
        select(RevokedSession.sid)
        .where(RevokedSession.expires_at > now)
        .order_by(RevokedSession.sid)
    )
    return list(sids)


async def record_revoked(
    session: AsyncSession, revoked: list[tuple[str, uuid.UUID]], until: datetime
) -> set[uuid.UUID]:
    """Remember revoked (sid, organisation) pairs until `until` (SYSTEM session); forget
    the ones whose tokens are all dead; the organisations whose list changed."""
    await session.execute(delete(RevokedSession).where(RevokedSession.expires_at <= utcnow()))
    changed: set[uuid.UUID] = set()
    for sid, organization_id in revoked:
        existing = await session.scalar(
            select(RevokedSession).where(
                RevokedSession.sid == sid, RevokedSession.organization_id == organization_id
            )
        )
        if existing is not None:
            existing.expires_at = max(existing.expires_at, until)
            continue
        session.add(RevokedSession(organization_id=organization_id, sid=sid, expires_at=until))
        changed.add(organization_id)
    return changed


async def organization_of(session: AsyncSession, sid: str) -> uuid.UUID | None:
    """The organisation of a registered session (SYSTEM session)."""
    organization_id: uuid.UUID | None = await session.scalar(
        select(UserSession.organization_id).where(UserSession.sid == sid)
    )
    return organization_id
