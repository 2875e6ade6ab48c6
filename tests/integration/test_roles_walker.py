"""The role walker: every operation of /openapi.json x each of the seven roles (a signed-in
member and an API key of that role) x no credential x expired and revoked credentials x a
gateway credential. The answer expected is derived, never tabled: the permission each
route declares (`requires(collection, action)`, read from the app) against the grant of
the roles data (`services/builtin_roles.yaml`). A route that declares no permission must be
public, self-service or gateway-only by a reason written below, or the walker fails."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from sqlalchemy import update

from control_plane.db.models import ApiKey
from control_plane.db.session import SYSTEM
from control_plane.services import roles
from control_plane.services.auth import sha256_hex
from control_plane.services.roles import ROLES
from tests.conftest import PASSWORD, Account, Stack, signup
from tests.integration.walker_support import (
    GATEWAY,
    MEMBER,
    PERMISSION,
    PLATFORM,
    PUBLIC,
    Operation,
    operations,
)

# Routes without a declared permission, by why. Public: no credential by design.
PUBLIC_OPERATIONS = {
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/.well-known/jwks.json"),
    ("POST", "/api/v1/auth/signup"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/session"),
    ("GET", "/api/v1/auth/sso/discover"),
    ("POST", "/api/v1/auth/sso/exchange"),
    ("POST", "/api/v1/auth/sso/link"),
    ("GET", "/api/v1/auth/oidc/{provider_id}/login"),
    ("GET", "/api/v1/auth/oidc/{provider_id}/callback"),
    ("GET", "/api/v1/auth/saml/{provider_id}/metadata"),
    ("GET", "/api/v1/auth/saml/{provider_id}/login"),
    ("POST", "/api/v1/auth/saml/{provider_id}/acs"),
    ("GET", "/api/v1/bundles/{scope}/jwks.json"),
    # The MCP authorization server's protocol endpoints (OAuth 2.1, one issuer per org).
    ("GET", "/.well-known/oauth-authorization-server/oauth/{organization_id}"),
    ("GET", "/.well-known/openid-configuration/oauth/{organization_id}"),
    ("GET", "/oauth/{organization_id}/authorize"),
    ("POST", "/oauth/{organization_id}/token"),
    ("POST", "/oauth/{organization_id}/register"),
    # Stripe's webhook: believed only when its Stripe-Signature verifies (test_billing_stripe).
    ("POST", "/api/v1/billing/stripe/webhook"),
}
# Any member, about themselves (their session, password, second factor); approvals decide
# per request who may see or decide it (the requester, or `approvals:read`/`decide`).
SELF_OPERATIONS = {
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/me/mfa"),
    ("POST", "/api/v1/me/mfa/totp"),
    ("POST", "/api/v1/me/mfa/totp/confirm"),
    ("DELETE", "/api/v1/me/mfa/totp"),
    ("DELETE", "/api/v1/auth/session"),
    ("GET", "/api/v1/me/sessions"),
    ("DELETE", "/api/v1/me/sessions/{session_id}"),
    ("DELETE", "/api/v1/me/sessions"),
    ("POST", "/api/v1/me/password"),
    ("GET", "/api/v1/approvals/{approval_id}"),
    ("POST", "/api/v1/approvals/{approval_id}/approve"),
    ("POST", "/api/v1/approvals/{approval_id}/deny"),
    ("GET", "/api/v1/oauth/requests/{request_id}"),
    ("POST", "/api/v1/oauth/requests/{request_id}"),
    ("GET", "/api/v1/oauth/grants"),
    ("DELETE", "/api/v1/oauth/grants/{grant_id}"),
}
# Self-service that belongs to people: an API key is refused (403) by the route.
PEOPLE_ONLY = {
    ("GET", "/api/v1/me/mfa"),
    ("POST", "/api/v1/me/mfa/totp"),
    ("POST", "/api/v1/me/mfa/totp/confirm"),
    ("DELETE", "/api/v1/me/mfa/totp"),
    ("POST", "/api/v1/me/password"),
    ("GET", "/api/v1/me/sessions"),
    ("DELETE", "/api/v1/me/sessions/{session_id}"),
    ("DELETE", "/api/v1/me/sessions"),
    ("DELETE", "/api/v1/auth/session"),
    ("GET", "/api/v1/oauth/requests/{request_id}"),
    ("POST", "/api/v1/oauth/requests/{request_id}"),
    ("GET", "/api/v1/oauth/grants"),
    ("DELETE", "/api/v1/oauth/grants/{grant_id}"),
}
# Sidecars and gateways, with their `kgw_…` credential.
GATEWAY_OPERATIONS = {
    ("GET", "/api/v1/gateways/self"),
    ("POST", "/api/v1/gateways/self/status"),
    ("POST", "/api/v1/approvals/grants/redeem"),
    ("POST", "/api/v1/decisions/ingest"),
    ("POST", "/api/v1/decisions/opa"),
    ("POST", "/api/v1/executions/ingest"),
}
# A shared platform gateway's sidecars and gateways, with their `kgp_…` credential: no
# member, API key or tenant gateway credential reaches them (what the platform credential
# reaches is tests/integration/test_platform_gateways.py).
PLATFORM_OPERATIONS = {
    ("GET", "/api/v1/platform/manifest"),
    ("POST", "/api/v1/platform/organizations/{organization_id}/decisions/ingest"),
    ("POST", "/api/v1/platform/organizations/{organization_id}/executions/ingest"),
    ("POST", "/api/v1/platform/organizations/{organization_id}/status"),
}
# Gateway credentials also read their own organisation's bundle.
GATEWAY_ALSO = {("GET", "/api/v1/bundles/{scope}/bundle.tar.gz")}
# Operations that end the credential that calls them: each call gets a fresh one.
SPENDS_CALLER = {
    ("POST", "/api/v1/auth/logout"),
    ("DELETE", "/api/v1/auth/session"),
    ("DELETE", "/api/v1/me/sessions"),
}
# A route's permission must fit its method, so a write cannot hide behind a reading
# permission: a GET declares a reading action; a write declares a writing one, except these
# dry runs (they evaluate drafts and store nothing but a replay's own report).
READING = {"read", "verify", "export", "simulate"}
DRY_RUNS = {
    ("POST", "/api/v1/policies/validate"),
    ("POST", "/api/v1/policies/simulate"),
    ("POST", "/api/v1/policies/test"),
    ("POST", "/api/v1/policies/replay"),
    ("POST", "/api/v1/policies/{policy_id}/replay"),
}
# Query parameters an operation cannot be called without.
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/v1/policies/{policy_id}/diff"): {"from": "1", "to": "1"},
    ("GET", "/api/v1/auth/sso/discover"): {"email": "someone@example.com"},
    ("GET", "/api/v1/auth/oidc/{provider_id}/callback"): {"state": "not-a-state"},
}
# Bodies where the route checks who calls only after the body is valid.
BODIES: dict[tuple[str, str], Any] = {("DELETE", "/api/v1/me/mfa/totp"): {"code": "000000"}}
REFUSED = (401, 403)


def _expected_auth(op: Operation) -> str:
    key = (op.method, op.path)
    declared = [
        name
        for name, table in (
            (PUBLIC, PUBLIC_OPERATIONS),
            (MEMBER, SELF_OPERATIONS),
            (GATEWAY, GATEWAY_OPERATIONS),
            (PLATFORM, PLATFORM_OPERATIONS),
        )
        if key in table
    ]
    assert len(declared) <= 1, f"{op} is declared {declared}"
    return declared[0] if declared else PERMISSION


class Credentials:
    """Every credential the walk calls with, made once per stack."""

    def __init__(self, client: httpx.AsyncClient, stack: Stack, owner: Account):
        self.client, self.stack, self.owner = client, stack, owner
        self.users: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}
        self.jwts: dict[str, str] = {}
        self.keys: dict[str, str] = {}
        self.bad: dict[str, str] = {}
        self.gateway = ""

    async def make(self) -> None:
        org = uuid.UUID(self.owner.organization_id)
        self.users["owner"] = (uuid.UUID(self.owner.user_id), org)
        for role in ROLES:
            if role != "owner":
                created = await self.client.post(
                    "/api/v1/users",
                    json={
                        "email": f"{role}-{uuid.uuid4().hex[:6]}@example.com",
                        "password": PASSWORD,
                        "role": role,
                    },
                    headers=self.owner.headers,
                )
                assert created.status_code == 201, created.text
                self.users[role] = (uuid.UUID(created.json()["id"]), org)
            self.jwts[role] = await self.fresh_jwt(role)
            self.keys[role] = await self.fresh_key(role)
        gateway = await self.client.post(
            "/api/v1/gateways",
            json={"name": "walk", "environment": "dev", "url": "http://walk.test"},
            headers=self.owner.headers,
        )
        assert gateway.status_code == 201, gateway.text
        self.gateway = gateway.json()["credential"]
        self.bad["expired access token"] = self._expired(self.jwts["owner"])
        revoked_jwt = await self.fresh_jwt("owner")
        out = await self.client.post("/api/v1/auth/logout", headers=_bearer(revoked_jwt))
        assert out.status_code in (200, 204), out.text
        self.bad["revoked access token"] = revoked_jwt
        revoked_key = await self.fresh_key("owner")
        listed = await self.client.get("/api/v1/api-keys", headers=self.owner.headers)
        key_id = next(
            k["id"] for k in listed.json()["items"] if revoked_key.startswith(k["prefix"])
        )
        gone = await self.client.delete(f"/api/v1/api-keys/{key_id}", headers=self.owner.headers)
        assert gone.status_code == 204, gone.text
        self.bad["revoked API key"] = revoked_key
        expired_key = await self.fresh_key("owner")
        # The API refuses an expiry in the past: age the key's row instead, as time would.
        async with self.stack.db.session(SYSTEM) as session:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.key_hash == sha256_hex(expired_key))
                .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
        self.bad["expired API key"] = expired_key

    async def fresh_jwt(self, role: str) -> str:
        """A new session of the role's member, as a login would open it."""
        user_id, org = self.users[role]
        pair = await self.stack.app.state.auth.issue(user_id, org)
        return str(pair.access_token)

    async def fresh_key(self, role: str) -> str:
        # By a new owner session: the walk may already have ended every earlier one.
        made = await self.client.post(
            "/api/v1/api-keys",
            json={"name": f"{role}-{uuid.uuid4().hex[:8]}", "role": role},
            headers=_bearer(await self.fresh_jwt("owner")),
        )
        assert made.status_code == 201, made.text
        return str(made.json()["key"])

    def _expired(self, token: str) -> str:
        """The same claims, signed by the real key ring, expired a minute ago."""
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        now = int(claims["iat"])
        ttl = int(claims["exp"]) - now
        claims.update(iat=now - ttl - 60, nbf=now - ttl - 60, exp=now - 60)
        return str(self.stack.app.state.keys.sign(claims))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _request(op: Operation, owner: Account) -> tuple[str, dict[str, str], Any]:
    values = {"scope": owner.organization_id, "provider": "walk", "version": "1"}
    path = op.path
    for parameter in op.parameters("path"):
        name = parameter["name"]
        path = path.replace("{" + name + "}", values.get(name, str(uuid.uuid4())))
    query = QUERIES.get((op.method, op.path), {})
    missing = [
        p["name"] for p in op.parameters("query") if p.get("required") and p["name"] not in query
    ]
    assert not missing, f"teach the role walker {op}'s ?{missing}"
    body = BODIES.get((op.method, op.path), {} if "requestBody" in op.spec else None)
    return path, query, body


def _check(op: Operation, who: str, response: httpx.Response, allowed: bool) -> str | None:
    status = response.status_code
    if status >= 500:
        return f"{op} as {who}: {status} {response.text[:200]}"
    if allowed and status in REFUSED:
        return f"{op} as {who}: refused {status} though allowed: {response.text[:200]}"
    if not allowed and status not in REFUSED:
        return f"{op} as {who}: {status}, expected a refusal: {response.text[:200]}"
    return None


async def test_every_operation_answers_each_role_as_the_roles_data_says(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    owner = await signup(client, "Role Walk")
    creds = Credentials(client, stack, owner)
    await creds.make()
    ops = sorted(operations(stack.app), key=lambda o: (o.method, o.path) in SPENDS_CALLER)
    wrong: list[str] = []
    undeclared = [str(op) for op in ops if op.auth != PERMISSION and _expected_auth(op) != op.auth]
    assert not undeclared, "routes without a declared permission:\n" + "\n".join(undeclared)
    misfits = [
        f"{op} declares {op.permission}"
        for op in ops
        if op.permission
        and (op.method == "GET") != (op.permission[1] in READING)
        and (op.method, op.path) not in DRY_RUNS
    ]
    assert not misfits, "permissions that do not fit the method:\n" + "\n".join(misfits)
    calls = 0

    async def call(op: Operation, headers: dict[str, str]) -> httpx.Response:
        nonlocal calls
        calls += 1
        path, query, body = _request(op, owner)
        return await client.request(op.method, path, params=query, json=body, headers=headers)

    for op in ops:
        key = (op.method, op.path)
        spends = key in SPENDS_CALLER
        anonymous = await call(op, {})
        if op.auth == PUBLIC:
            # No credential needed: a bad one changes nothing about the answer.
            if anonymous.status_code in REFUSED or anonymous.status_code >= 500:
                wrong.append(f"public {op} refused no credential: {anonymous.status_code}")
            for name, token in creds.bad.items():
                answered = await call(op, _bearer(token))
                if answered.status_code != anonymous.status_code:
                    wrong.append(f"public {op} with a {name}: {answered.status_code}")
            continue
        if anonymous.status_code != 401:
            wrong.append(f"{op} with no credential: {anonymous.status_code}")
        for name, token in creds.bad.items():
            answered = await call(op, _bearer(token))
            if answered.status_code != 401:
                wrong.append(f"{op} with a {name}: {answered.status_code}")
        by_gateway = await call(op, _bearer(creds.gateway))
        problem = _check(op, "a gateway", by_gateway, op.auth == GATEWAY or key in GATEWAY_ALSO)
        wrong += [problem] if problem else []
        owner_status = 0
        for role in ROLES:
            jwt_token = await creds.fresh_jwt(role) if spends else creds.jwts[role]
            api_key = await creds.fresh_key(role) if spends else creds.keys[role]
            for kind, token in (("member", jwt_token), ("API key", api_key)):
                if op.auth == PERMISSION:
                    assert op.permission is not None
                    allowed = roles.role_allows(role, *op.permission)
                elif op.auth == MEMBER:
                    allowed = not (kind == "API key" and key in PEOPLE_ONLY)
                else:
                    allowed = False  # a gateway route takes no user credential
                answered = await call(op, _bearer(token))
                problem = _check(op, f"{role} {kind}", answered, allowed)
                # A refusal is the role table's, and says so.
                if (
                    problem is None
                    and not allowed
                    and op.auth == PERMISSION
                    and (answered.status_code != 403 or "may not" not in answered.text)
                ):
                    problem = f"{op} as {role} {kind}: {answered.text[:200]}"
                # Past the gate, a role's answer is the owner's (same request, same route).
                if op.auth == PERMISSION and allowed:
                    owner_status = owner_status or answered.status_code
                    if problem is None and answered.status_code != owner_status:
                        problem = (
                            f"{op} as {role} {kind}: {answered.status_code} where the owner"
                            f" gets {owner_status}: {answered.text[:200]}"
                        )
                wrong += [problem] if problem else []

    kinds = 2 * len(ROLES) + 1 + len(creds.bad) + 1
    print(
        f"role walker: {len(ops)} operations x {len(ROLES)} roles x (member, API key)"
        f" + no credential + {len(creds.bad)} expired/revoked + gateway"
        f" = {kinds} credential kinds, {calls} calls"
    )
    assert not wrong, f"{len(wrong)} answers differ from the roles data:\n" + "\n".join(wrong)
