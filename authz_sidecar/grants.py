"""Approval grants (proto/README.md): a signed, single-use token bound to one request.

A grant turns a `require_approval` outcome into `allow`, once; it never overrides a deny.
Its `jti` is remembered until its `exp`: in Redis (`SET NX`, shared by every worker and
sidecar on that Redis) or in process.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import redis.asyncio as aioredis
from jwt import PyJWK

from authz_sidecar.authn import AuthenticationError, verify_eddsa
from policy.compiler import canonical_json

GRANT_TYP = "kaizen-approval+jwt"
GRANT_AUDIENCE = "kaizen-sidecar"
_REQUIRED = ("exp", "iat", "jti", "sub", "action", "resource", "args", "org")


class GrantError(Exception):
    """The grant does not allow this request; the message says why."""


def arguments_hash(arguments: Mapping[str, Any] | None) -> str:
    """SHA-256 hex of the canonical JSON of the tool arguments (or of `{}`)."""
    return hashlib.sha256(canonical_json(dict(arguments or {}))).hexdigest()


class GrantVerifier:
    def __init__(self, keys: Mapping[str, PyJWK], *, issuer: str, organization: str) -> None:
        self._keys = keys
        self._issuer = issuer
        self._organization = organization

    def verify(self, token: str, input: Mapping[str, Any]) -> dict[str, Any]:
        """The grant's claims if it was issued for exactly this decision input."""
        try:
            claims = verify_eddsa(
                token,
                self._keys,
                audience=GRANT_AUDIENCE,
                issuer=self._issuer,
                typ_header=GRANT_TYP,
                required=_REQUIRED,
            )
        except AuthenticationError as exc:
            raise GrantError(f"approval grant rejected: {exc}") from None
        if claims["org"] != self._organization:
            raise GrantError("approval grant rejected: it is for another organization")
        tool = input.get("tool") or {}
        try:
            args = arguments_hash(tool.get("arguments"))
        except (TypeError, ValueError):
            raise GrantError("approval grant rejected: arguments cannot be hashed") from None
        bound = (
            ("sub", input["principal"]["id"], "principal"),
            ("action", input["action"], "action"),
            ("resource", input["resource"]["id"], "resource"),
            ("args", args, "set of tool arguments"),
        )
        for claim, expected, what in bound:
            if claims[claim] != expected:
                raise GrantError(f"approval grant rejected: it was granted for a different {what}")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise GrantError("approval grant rejected: it has no jti")
        return claims


class ReplayGuard(Protocol):
    async def first_use(self, jti: str, expires_at: float) -> bool:
        """True the first time `jti` is seen (and remembers it until `expires_at`)."""
        ...


class InMemoryReplayGuard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    async def first_use(self, jti: str, expires_at: float) -> bool:
        now = time.time()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            seen = self._seen.get(jti)
            if seen is not None and seen > now:
                return False
            self._seen[jti] = expires_at
            return True


class RedisReplayGuard:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def first_use(self, jti: str, expires_at: float) -> bool:
        ttl_ms = max(1000, int((expires_at - time.time()) * 1000) + 60_000)
        stored = await self._client.set(f"{self._prefix}grant:{jti}", b"1", nx=True, px=ttl_ms)
        return bool(stored)
