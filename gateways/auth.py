"""The only identity the gateway trusts: the sidecar's signed `x-kaizen-decision` header.

proto/README.md: HS256 with key `HMAC-SHA256(key=KAIZEN_GATEWAY_TOKEN,
msg="kaizen-decision-v1")`, claims `{decision_id, sub, org, roles, action, resource,
channel, iat, exp = iat + 30 s}`. A request without a valid header whose action and
resource match the route (and whose organisation is the deployments') is refused with 401,
so a call that bypasses Envoy and the sidecar gets nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import jwt

from gateways.errors import Unauthenticated

HEADER = "x-kaizen-decision"
MAX_TTL_SECONDS = 30
LEEWAY_SECONDS = 2
_REQUIRED = ["decision_id", "sub", "action", "resource", "iat", "exp"]


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


class DecisionVerifier:
    def __init__(self, gateway_token: str) -> None:
        self._key = decision_key(gateway_token)

    def verify(
        self, header: str | None, action: str, resource: str, organization: str | None
    ) -> Decision:
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
        org = claims.get("org")
        if organization is not None and org != organization:
            raise Unauthenticated("x-kaizen-decision was issued for another organisation")
        roles = claims.get("roles") or []
        if not all(isinstance(r, str) for r in roles) or not isinstance(claims["sub"], str):
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
        )
