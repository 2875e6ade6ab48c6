"""Audience-bound MCP access tokens and rotating refresh tokens.

An access token is an RFC 9068 JWT (`typ: at+jwt`) signed by the platform key, whose `aud`
is exactly one gateway's MCP resource URL and whose `iss` is the organisation's issuer; the
sidecar of that gateway accepts it and no other (authz_sidecar/authn.py). It carries who
the user is in the organisation (role, teams) like a studio token, plus `client_id` and
`scope`, and the grant's `sid`, so revoking the grant ends its tokens at the sidecars too.

Refresh tokens are opaque, single use and rotate; presenting a used one revokes the grant
(a stolen copy and its owner cannot both keep going).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from control_plane.db.base import utcnow
from control_plane.services.keys import KeyRing
from control_plane.services.kv import KeyValueStore
from control_plane.services.oauth import ACCESS_TOKEN_TYP

REFRESH_PREFIX = "mrt_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class GrantClaims:
    """What a token of one grant says; also the refresh token's record."""

    issuer: str
    resource: str
    organization_id: str
    user_id: str
    session_id: str
    grant_id: str
    client_id: str
    scope: str

    def record(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def parse(cls, record: str) -> GrantClaims:
        return cls(**json.loads(record))


def sign_access_token(
    keys: KeyRing,
    grant: GrantClaims,
    *,
    email: str,
    role: str,
    teams: list[str],
    ttl: int,
) -> str:
    now = utcnow()
    claims: dict[str, Any] = {
        "iss": grant.issuer,
        "aud": grant.resource,
        "sub": grant.user_id,
        "org": grant.organization_id,
        "sid": grant.session_id,
        "client_id": grant.client_id,
        "scope": grant.scope,
        "email": email,
        "role": role,
        "teams": teams,
        "jti": secrets.token_urlsafe(12),
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=ttl),
    }
    return keys.sign(claims, headers={"typ": ACCESS_TOKEN_TYP})


class RefreshTokens:
    def __init__(self, kv: KeyValueStore, ttl: int) -> None:
        self._kv, self._ttl = kv, ttl

    async def issue(self, grant: GrantClaims) -> str:
        token = REFRESH_PREFIX + secrets.token_urlsafe(32)
        await self._kv.set(f"oauth-refresh:{_digest(token)}", grant.record(), ttl=self._ttl)
        return token

    async def redeem(self, token: str) -> tuple[GrantClaims | None, GrantClaims | None]:
        """(the grant of a live token, consumed) or (None, the grant of a reused token)."""
        digest = _digest(token)
        record = await self._kv.pop(f"oauth-refresh:{digest}")
        if record is not None:
            await self._kv.set(f"oauth-refresh-used:{digest}", record, ttl=self._ttl)
            return GrantClaims.parse(record), None
        used = await self._kv.get(f"oauth-refresh-used:{digest}")
        return None, GrantClaims.parse(used) if used else None
