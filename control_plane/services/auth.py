"""Credentials: access JWTs, rotating refresh tokens, API keys, and turning any of them
into a `Principal`.

Access tokens are short-lived EdDSA JWTs verified against our own key ring only; the
algorithm is pinned, so `alg: none` and HS256-signed-with-the-public-key are refused
before any key is touched. Refresh tokens are opaque, single-use and rotate; presenting
a used one revokes its whole session (theft detection).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import jwt
from sqlalchemy import select

from control_plane.db.base import utcnow
from control_plane.db.models import ApiKey, Membership, Team, TeamMember, User
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Unauthenticated
from control_plane.services.keys import ALGORITHM, KeyRing
from control_plane.services.kv import KeyValueStore
from control_plane.services.principal import Principal
from control_plane.services.sessions import Client, register
from control_plane.settings import Settings

API_KEY_PREFIX = "ks_"
REFRESH_PREFIX = "rt_"
_LAST_USED_GRANULARITY = timedelta(seconds=60)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    user_id: uuid.UUID
    organization_id: uuid.UUID
    expires_in: int
    session_id: str


class Authenticator:
    def __init__(self, settings: Settings, db: Database, keys: KeyRing, kv: KeyValueStore):
        self._settings = settings
        self._db = db
        self._keys = keys
        self._kv = kv
        # Told of every ended session (sid, organisation if known); see revocations.py.
        self.on_revoke: Callable[[str, uuid.UUID | None], None] | None = None

    @property
    def access_token_ttl(self) -> int:
        return self._settings.access_token_ttl_seconds

    # -- issuing -------------------------------------------------------------------------

    async def issue(
        self,
        user_id: uuid.UUID,
        organization_id: uuid.UUID,
        session_id: str | None = None,
        *,
        client: Client | None = None,
    ) -> TokenPair:
        sid = session_id or secrets.token_urlsafe(16)
        if session_id is None:  # a new login: into the registry the session list reads
            await register(self._db, sid, user_id, organization_id, "token", client)
        # Sidecars authorize from the token alone: it carries who the caller is in the org.
        role, email = await self._membership_role(user_id, organization_id)
        teams = await self._team_names(user_id, organization_id)
        now = utcnow()
        ttl = self._settings.access_token_ttl_seconds
        access = self._keys.sign(
            {
                "iss": self._settings.issuer,
                "aud": self._settings.audience,
                "sub": str(user_id),
                "org": str(organization_id),
                "sid": sid,
                "typ": "access",
                "email": email,
                "role": role,
                "teams": teams,
                "jti": secrets.token_urlsafe(12),
                "iat": now,
                "nbf": now,
                "exp": now + timedelta(seconds=ttl),
            }
        )
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        refresh_ttl = self._settings.refresh_token_ttl_seconds
        record = json.dumps({"user": str(user_id), "org": str(organization_id), "sid": sid})
        await self._kv.set(f"refresh:{sha256_hex(refresh)}", record, ttl=refresh_ttl)
        await self._kv.set(f"session:{sid}", sha256_hex(refresh), ttl=refresh_ttl)
        return TokenPair(access, refresh, user_id, organization_id, ttl, sid)

    async def refresh(self, refresh_token: str) -> TokenPair:
        digest = sha256_hex(refresh_token)
        record = await self._kv.pop(f"refresh:{digest}")
        if record is None:
            reused_sid = await self._kv.get(f"refresh-used:{digest}")
            if reused_sid:
                await self.revoke_session(reused_sid)
            raise Unauthenticated("refresh token is invalid, expired or already used")
        claims = json.loads(record)
        sid = claims["sid"]
        await self._kv.set(
            f"refresh-used:{digest}", sid, ttl=self._settings.refresh_token_ttl_seconds
        )
        if await self._kv.get(f"revoked:{sid}"):
            raise Unauthenticated("session has been revoked")
        user_id, org_id = uuid.UUID(claims["user"]), uuid.UUID(claims["org"])
        await self._membership_role(user_id, org_id)
        return await self.issue(user_id, org_id, sid)

    async def revoke_session(self, sid: str, organization_id: uuid.UUID | None = None) -> None:
        current = await self._kv.pop(f"session:{sid}")
        if current:
            await self._kv.delete(f"refresh:{current}")
        # Access tokens of the session die with it, not at their expiry.
        await self._kv.set(f"revoked:{sid}", "1", ttl=self._settings.access_token_ttl_seconds + 60)
        # ... at the sidecars too: the revocation rides a re-signed bundle (revocations.py).
        if self.on_revoke is not None:
            self.on_revoke(sid, organization_id)

    # -- verifying -----------------------------------------------------------------------

    async def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, credential = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthenticated("send Authorization: Bearer <access token or API key>")
        credential = credential.strip()
        if credential.startswith(API_KEY_PREFIX):
            return await self._api_key_principal(credential)
        return await self._token_principal(credential)

    async def _token_principal(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed access token") from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise Unauthenticated("access token must be EdDSA-signed with a key id")
        key = await self._keys.public_key(kid)
        if key is None:
            raise Unauthenticated("access token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "sid"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token has expired") from None
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"invalid access token: {error}") from None
        if claims.get("typ") != "access":
            raise Unauthenticated("not an access token")
        if await self._kv.get(f"revoked:{claims['sid']}"):
            raise Unauthenticated("session has been revoked")
        try:
            user_id, org_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["org"])
        except (KeyError, ValueError, TypeError):
            raise Unauthenticated("invalid access token subject") from None
        role, email = await self._membership_role(user_id, org_id)
        return Principal("user", user_id, org_id, role, email, session_id=claims["sid"])

    async def session_principal(self, user_id: uuid.UUID, org_id: uuid.UUID, sid: str) -> Principal:
        """The user of a session proven by other means than a token (a browser cookie)."""
        if await self._kv.get(f"revoked:{sid}"):
            raise Unauthenticated("session has been revoked")
        role, email = await self._membership_role(user_id, org_id)
        return Principal("user", user_id, org_id, role, email, session_id=sid)

    async def member(self, user_id: uuid.UUID, org_id: uuid.UUID) -> tuple[str, str, list[str]]:
        """Role, email and team names of a current member (Unauthenticated otherwise)."""
        role, email = await self._membership_role(user_id, org_id)
        return role, email, await self._team_names(user_id, org_id)

    async def _membership_role(self, user_id: uuid.UUID, org_id: uuid.UUID) -> tuple[str, str]:
        async with self._db.session(org_id) as session:
            row = (
                await session.execute(
                    select(Membership.role, User.email)
                    .join(User, User.id == Membership.user_id)
                    .where(Membership.user_id == user_id, User.is_active.is_(True))
                )
            ).first()
        if row is None:
            raise Unauthenticated("no longer a member of this organisation")
        return row.role, row.email

    async def _team_names(self, user_id: uuid.UUID, org_id: uuid.UUID) -> list[str]:
        async with self._db.session(org_id) as session:
            names = await session.scalars(
                select(Team.name)
                .join(TeamMember, TeamMember.team_id == Team.id)
                .where(TeamMember.user_id == user_id)
                .order_by(Team.name)
            )
            return list(names)

    async def _api_key_principal(self, key: str) -> Principal:
        now = utcnow()
        # The key's organisation is unknown until the key is found: a SYSTEM lookup by hash.
        async with self._db.session(SYSTEM) as session:
            api_key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == sha256_hex(key)))
            if api_key is None or api_key.revoked_at is not None:
                raise Unauthenticated("unknown or revoked API key")
            if api_key.expires_at is not None and api_key.expires_at <= now:
                raise Unauthenticated("API key has expired")
            if api_key.last_used_at is None or now - api_key.last_used_at > _LAST_USED_GRANULARITY:
                api_key.last_used_at = now
        return Principal(
            "api_key",
            api_key.id,
            api_key.organization_id,
            api_key.role,
            api_key.name,
            scopes=tuple(api_key.scopes),
        )
