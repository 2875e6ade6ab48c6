"""Signed bundles, access tokens, API keys and approval grants for the sidecar's tests.

Real keys (policy.bundles.keys.generate_ed25519), real bundles
(policy.bundles.bundle.build_bundle): the sidecar under test verifies them exactly as it
would the control plane's.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from authz_sidecar.grants import GRANT_AUDIENCE, GRANT_TYP, arguments_hash
from policy.bundles.bundle import build_bundle
from policy.bundles.gateway_binding import binding_of_credential
from policy.bundles.keys import PrivateKey, generate_ed25519, load_private_key
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.policy_set import PolicySet

ORG = "org-acme"
KID = "cp-key-1"
ISSUER = "kaizen-studio"
AUDIENCE = "kaizen-studio-api"
API_KEY = "ks_test_0123456789abcdef"  # bound to apikey:ci-bot (agent-user, budget of 3/day)
API_KEY_UNBOUND = "ks_test_fedcba9876543210"  # apikey:lonely, no role
ALICE = "alice@example.com"  # agent-user
BOB = "bob@example.com"  # no binding: RBAC denies
GATEWAY_TOKEN = "kgw_unit_test_credential"  # the sidecar's gateway, which grants bind
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions:
        - {resource: "agent:*", actions: [invoke]}
        - {resource: "pipeline:*", actions: [run]}
        - {resource: "mcp:*", actions: [connect, list]}
  bindings:
    - {subject: "user:alice@example.com", role: agent-user}
    - {subject: "apikey:ci-bot", role: agent-user}
---
kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "mcp tool shell is forbidden" if input.tool.name == "shell"
    require_approval contains "the deployer agent needs approval" if {
      input.resource.id == "agent:deployer"
    }
---
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
    - {name: ci-daily, scope: "apikey:ci-bot", metric: executions, limit: 3, period: day}
"""


@dataclass(frozen=True)
class Keys:
    private: PrivateKey
    jwks: dict[str, Any]
    kid: str = KID


def make_keys(kid: str = KID) -> Keys:
    pem, jwks = generate_ed25519(kid)
    return Keys(load_private_key(pem), jwks, kid)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_bundle(
    keys: Keys,
    *,
    revision: int = 1,
    organization: str = ORG,
    policy: str = POLICY,
    token_jwks: dict[str, Any] | None = None,
    agents: dict[str, Any] | None = None,
    mcp_resources: dict[str, str] | None = None,
) -> bytes:
    """A signed bundle whose data.json carries `token_jwks` (default: the signing JWKS)."""
    compiled = compile_policy(
        PolicySet.from_sources([("policy.yaml", policy)]),
        CompileContext(
            organization_id=organization,
            api_keys=[
                {"name": "ci-bot", "key_hash": sha256(API_KEY), "roles": []},
                {"name": "lonely", "key_hash": sha256(API_KEY_UNBOUND), "roles": []},
            ],
            jwks=token_jwks if token_jwks is not None else keys.jwks,
            agents=agents or {"ops": {"tools": ["restart-service"]}},
            mcp_resources=mcp_resources or {},
        ),
    )
    return build_bundle(
        compiled, revision=revision, signing_key=keys.private, kid=keys.kid, scope=organization
    )


def access_token(
    keys: Keys,
    email: str = ALICE,
    *,
    role: str = "member",
    teams: list[str] | None = None,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "typ": "access",
        "sub": str(uuid.uuid4()),
        "org": ORG,
        "email": email,
        "role": role,
        "teams": teams or [],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(
        payload, keys.private, algorithm="EdDSA", headers={"kid": keys.kid, **(headers or {})}
    )


def approval_grant(
    keys: Keys,
    *,
    sub: str = f"user:{ALICE}",
    action: str = "invoke",
    resource: str = "agent:deployer",
    arguments: dict[str, Any] | None = None,
    typ: str = GRANT_TYP,
    gateway_token: str = GATEWAY_TOKEN,
    body: bytes | None = b"",
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": GRANT_AUDIENCE,
        "org": ORG,
        "sub": sub,
        "action": action,
        "resource": resource,
        "args": arguments_hash(arguments),
        "gw": binding_of_credential(gateway_token),
        "body": hashlib.sha256(body).hexdigest() if body is not None else None,
        "approval_request_id": "apr-" + uuid.uuid4().hex[:8],
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
    }
    payload.update(claims)
    return jwt.encode(
        payload, keys.private, algorithm="EdDSA", headers={"kid": keys.kid, "typ": typ}
    )
