"""The only identity the gateway trusts: the sidecar's signed `x-kaizen-decision` header.

docs/runtime-protocols.md: HS256 with key `HMAC-SHA256(key=KAIZEN_GATEWAY_TOKEN,
msg="kaizen-decision-v1")`, claims `{decision_id, jti, sub, org, roles, action, resource,
channel, method, path, bh, rsv, iat, exp = iat + 30 s}` (`rsv`: whether the call reserved
budget at the sidecar, so needs settling; a header without it is settled). A header admits
exactly one request: the one it was issued for (action and resource of the route, method,
path without the query, SHA-256 of the body the gateway received) and only once (its `jti`
is remembered until it expires). Anything else is 401, so a call that bypasses Envoy and the
sidecar, or replays or transplants a header it saw, gets nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt

from gateways.errors import Unauthenticated

HEADER = "x-kaizen-decision"
MAX_TTL_SECONDS = 30
LEEWAY_SECONDS = 2
_REQUIRED = [
    "decision_id",
    "jti",
    "sub",
    "action",
    "resource",
    "method",
    "path",
    "bh",
    "iat",
    "exp",
]


def decision_key(gateway_token: str) -> bytes:
    return hmac.new(gateway_token.encode(), b"kaizen-decision-v1", hashlib.sha256).digest()


@dataclass(frozen=True)
class Decision:
    decision_id: str
    principal: str
    organization: str | None
    roles: tuple[str, ...]
    action: str
    resource: str
    channel: str
    reserved: bool = True  # budget was reserved for the call: settle it with what it used


class UsedDecisions:
    """The `jti`s this gateway process has admitted, each until its header expires.

    A header is minted for one gateway (its key is that gateway's credential) and lives
    30 s, so this process's memory is where its replay would land."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}
        self._capacity = capacity

    def first_use(self, jti: str, expires_at: float) -> bool:
        now = time.time()
        with self._lock:
            if len(self._seen) >= self._capacity:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
                if len(self._seen) >= self._capacity:  # flooded: refuse rather than forget
                    return False
            seen = self._seen.get(jti)
            if seen is not None and seen > now:
                return False
            self._seen[jti] = expires_at
            return True


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class DecisionVerifier:
    def __init__(self, gateway_token: str, used: UsedDecisions | None = None) -> None:
        self._key = decision_key(gateway_token)
        self._used = used or UsedDecisions()

    def verify(
        self,
        header: str | None,
        action: str,
        resource: str,
        organization: str | None,
        *,
        method: str,
        path: str,
        body: bytes,
    ) -> Decision:
        """The decision `header` carries, if it was issued for exactly this request, once."""
        if not header:
            raise Unauthenticated(
                "missing x-kaizen-decision: call the gateway through its proxy and sidecar"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                header,
                self._key,
                algorithms=["HS256"],
                options={"require": _REQUIRED, "verify_aud": False},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("x-kaizen-decision has expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("x-kaizen-decision is not valid") from None
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > MAX_TTL_SECONDS:
            raise Unauthenticated("x-kaizen-decision lives longer than allowed")
        if claims.get("action") != action or claims.get("resource") != resource:
            raise Unauthenticated(
                f"x-kaizen-decision was issued for another request (expected {action} {resource})"
            )
        self._check_request(claims, method, path, body)
        org = claims.get("org")
        if organization is not None and org != organization:
            raise Unauthenticated("x-kaizen-decision was issued for another organisation")
        roles = claims.get("roles") or []
        if not all(isinstance(r, str) for r in roles) or not isinstance(claims["sub"], str):
            raise Unauthenticated("x-kaizen-decision has malformed claims")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise Unauthenticated("x-kaizen-decision has malformed claims")
        # Last, so a header refused for another reason is not spent by the refusal.
        if not self._used.first_use(jti, float(exp + LEEWAY_SECONDS)):
            raise Unauthenticated(
                "x-kaizen-decision was already used: each sidecar decision admits one request"
            )
        reserved = claims.get("rsv", True)  # older sidecars do not say: settle, as before
        if not isinstance(reserved, bool):
            raise Unauthenticated("x-kaizen-decision has malformed claims")
        channel = claims.get("channel")
        return Decision(
            decision_id=str(claims["decision_id"]),
            principal=claims["sub"],
            organization=org if isinstance(org, str) else None,
            roles=tuple(roles),
            action=action,
            resource=resource,
            channel=channel if channel in ("api", "cli", "mcp") else "api",
            reserved=reserved,
        )

    @staticmethod
    def _check_request(claims: dict[str, Any], method: str, path: str, body: bytes) -> None:
        if claims.get("method") != method.upper() or claims.get("path") != path.split("?", 1)[0]:
            raise Unauthenticated(
                f"x-kaizen-decision was issued for another request (expected {method.upper()} "
                f"{path.split('?', 1)[0][:200]})"
            )
        bound = claims.get("bh")
        if bound is None:
            raise Unauthenticated(
                "x-kaizen-decision is not bound to a request body: the proxy must send the "
                "body to the sidecar (Envoy with_request_body)"
            )
        if not isinstance(bound, str) or not hmac.compare_digest(bound, body_sha256(body)):
            raise Unauthenticated("x-kaizen-decision was issued for another request body")
