"""What a check answers (`Verdict`), the signed `x-kaizen-decision` header the gateway
trusts (HS256 under a key derived from the gateway credential; docs/runtime-protocols.md)
and the RFC 6750 / RFC 9728 challenges of a 401 or an `insufficient_scope` 403."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from policy.engine.decision_input import Outcome

if TYPE_CHECKING:
    from authz_sidecar.engine_holder import Snapshot

DECISION_HEADER_TTL = 30


def decision_header_key(gateway_token: str) -> bytes:
    """The HS256 key of `x-kaizen-decision` (docs/runtime-protocols.md), shared with the gateway."""
    return hmac.new(gateway_token.encode(), b"kaizen-decision-v1", hashlib.sha256).digest()


_HS256_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")


def hs256_jwt(claims: Mapping[str, Any], key: bytes) -> str:
    """A compact JWS (RFC 7515) of `claims` signed HS256, built with `hmac` directly: the
    header is constant and PyJWT's general path was ~5 % of a check (any JWT library
    verifies it; the gateway uses PyJWT)."""
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=")
    signing_input = _HS256_HEADER + b"." + payload
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


@dataclass(slots=True)  # built per check: not frozen (5x the init cost)
class Verdict:
    status: int  # 200 allow, 401 unauthenticated, 403 deny or require_approval
    outcome: Outcome
    decision_id: str
    reasons: tuple[str, ...]
    bundle_revision: str | None
    principal: str | None = None
    organization: str | None = None
    approval_request_id: str | None = None
    signed_decision: str | None = None  # x-kaizen-decision for the gateway (allow only)
    remove_headers: tuple[str, ...] = ()  # the caller's own x-kaizen-* headers
    challenge: str | None = None  # WWW-Authenticate of a 401 / insufficient_scope 403

    @property
    def allowed(self) -> bool:
        return self.status == 200

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision_id": self.decision_id,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "bundle_revision": self.bundle_revision,
        }
        if self.approval_request_id is not None:
            out["approval_request_id"] = self.approval_request_id
        return out

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())

    def upstream_headers(self) -> list[tuple[str, str]]:
        """Headers the proxy adds to the request it forwards (allow only)."""
        headers = [("x-kaizen-decision-id", self.decision_id)]
        if self.principal is not None:
            headers.append(("x-kaizen-principal", self.principal))
        if self.organization is not None:
            headers.append(("x-kaizen-organization", self.organization))
        if self.signed_decision is not None:
            headers.append(("x-kaizen-decision", self.signed_decision))
        return headers


def deny(
    decision_id: str,
    reasons: tuple[str, ...],
    revision: str | None,
    principal: Mapping[str, Any] | None = None,
    snapshot: Snapshot | None = None,
) -> Verdict:
    return Verdict(
        403,
        "deny",
        decision_id,
        reasons,
        revision,
        principal["id"] if principal is not None else None,
        snapshot.organization if snapshot is not None else None,
    )


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "").replace('"', "'")[:200] + '"'


def token_challenge(resource_metadata: str | None, error: str | None) -> str:
    """RFC 6750 §3 + RFC 9728 §5.1: no error code when no credential was sent."""
    parts = ['realm="kaizen"']
    if error is not None:
        parts += ['error="invalid_token"', f"error_description={_quoted(error)}"]
    if resource_metadata is not None:
        parts.append(f"resource_metadata={_quoted(resource_metadata)}")
    return "Bearer " + ", ".join(parts)


def scope_challenge(scope: str, resource_metadata: str | None) -> str:
    parts = ['error="insufficient_scope"', f"scope={_quoted(scope)}"]
    if resource_metadata is not None:
        parts.append(f"resource_metadata={_quoted(resource_metadata)}")
    return "Bearer " + ", ".join(parts)
