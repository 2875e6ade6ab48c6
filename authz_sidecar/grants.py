"""Approval grants (docs/runtime-protocols.md): a signed, single-use token bound to one request.

A grant turns a `require_approval` outcome into `allow`, once; it never overrides a deny.
It is bound to the principal, action, resource, tool arguments, the gateway whose sidecar
held the call (`gw`, derived from the gateway credential) and, for `/invoke` and `/run`,
the SHA-256 of the request body (`body`). Its `jti` is remembered until its `exp` in Redis
(`SET NX`, shared by every worker and sidecar on that Redis). A sidecar without Redis
redeems the grant at the control plane instead (`ControlPlaneReplayGuard`, its gateway
credential; unreachable means refused), and one with neither refuses every grant
(`NoSharedReplayGuard`): memory of one process cannot make a grant single use across a
fleet or a restart. `InMemoryReplayGuard` is for tests only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
import redis.asyncio as aioredis
from jwt import PyJWK

from authz_sidecar.authn import AuthenticationError, verify_eddsa
from policy.compile.compiler import canonical_json

GRANT_TYP = "kaizen-approval+jwt"
GRANT_AUDIENCE = "kaizen-sidecar"
_REQUIRED = ("exp", "iat", "jti", "sub", "action", "resource", "args", "org", "gw")
NO_SHARED_STORE = (
    "approval grants need shared Redis (KAIZEN_REDIS_URL) or the control plane "
    "(KAIZEN_GATEWAY_TOKEN) to be single use across every sidecar and restart; this "
    "sidecar has neither, so it refuses them"
)
REDEEM_PATH = "/api/v1/approvals/grants/redeem"


class GrantError(Exception):
    """The grant does not allow this request; the message says why."""


def arguments_hash(arguments: Mapping[str, Any] | None) -> str:
    """SHA-256 hex of the canonical JSON of the tool arguments (or of `{}`)."""
    return hashlib.sha256(canonical_json(dict(arguments or {}))).hexdigest()


class GrantVerifier:
    def __init__(
        self,
        keys: Mapping[str, PyJWK],
        *,
        issuer: str,
        organization: str,
        gateway: str | None = None,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._organization = organization
        self._gateway = (
            gateway  # the binding (policy/bundles/gateway_binding.py) of this sidecar's credential
        )

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
        if self._gateway is None:
            raise GrantError(
                "approval grant rejected: this sidecar has no gateway credential "
                "(KAIZEN_GATEWAY_TOKEN), so it cannot tell which gateway a grant is for"
            )
        if claims["gw"] != self._gateway:
            raise GrantError("approval grant rejected: it was granted for another gateway")
        self._check_body(claims.get("body"), input)
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

    @staticmethod
    def _check_body(granted: object, input: Mapping[str, Any]) -> None:
        # MCP calls are bound by their tool arguments (the JSON-RPC body also carries a
        # per-message id); every other route by the exact body the approver saw held.
        if input.get("channel") == "mcp":
            if granted is not None:
                raise GrantError("approval grant rejected: it was granted for a non-MCP request")
            return
        seen = (input.get("request") or {}).get("body_sha256")
        if seen is None:
            raise GrantError(
                "approval grant rejected: the sidecar did not see this request's body, so it "
                "cannot check the grant against it (the proxy must send the body)"
            )
        if granted != seen:
            raise GrantError("approval grant rejected: it was granted for a different body")


class ReplayGuard(Protocol):
    async def first_use(self, jti: str, expires_at: float) -> bool:
        """True the first time `jti` is seen (and remembers it until `expires_at`)."""
        ...


class NoSharedReplayGuard:
    """A sidecar without Redis: every grant is refused, saying why (fail closed)."""

    async def first_use(self, jti: str, expires_at: float) -> bool:
        raise GrantError(f"approval grant refused: {NO_SHARED_STORE}")


class ControlPlaneReplayGuard:
    """No shared Redis: the control plane spends each grant once (row lock), for this
    gateway only. Any answer but "first use" or "already used" refuses (fail closed)."""

    def __init__(self, control_plane_url: str, gateway_token: str, *, timeout: float = 0.8) -> None:
        # Under Envoy's 1 s ext_authz timeout: a slow control plane is a refusal, not a 503.
        self._url = control_plane_url.rstrip("/") + REDEEM_PATH
        self._headers = {"authorization": f"Bearer {gateway_token}"}
        self._client = httpx.AsyncClient(timeout=timeout)

    async def first_use(self, jti: str, expires_at: float) -> bool:
        try:
            response = await self._client.post(self._url, json={"jti": jti}, headers=self._headers)
        except httpx.HTTPError as exc:
            raise GrantError(
                f"approval grant refused: the control plane cannot be asked whether it was "
                f"used ({type(exc).__name__})"
            ) from None
        if response.status_code == 200:
            return True
        message = _error_message(response)
        if response.status_code == 409 and "already used" in message:
            return False
        raise GrantError(f"approval grant refused by the control plane: {message}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_message(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
    return str(message)[:200]


class InMemoryReplayGuard:
    """One process's memory: for tests only; the runtime never uses it for grants."""

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
