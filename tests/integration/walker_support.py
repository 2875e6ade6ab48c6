"""What the tenancy and role walkers share: the app's operations as the app declares them,
a snapshot of everything one organisation owns, and a full set of objects to walk over."""

from __future__ import annotations

import base64
import inspect
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import _get_api_route_for_openapi
from sqlalchemy import Table, select

from control_plane.api.deps import get_gateway, get_principal
from control_plane.api.mfa import get_enroller
from control_plane.api.platform import get_platform
from control_plane.db.base import Base
from control_plane.db.session import SYSTEM
from tests.conftest import PASSWORD, Account, Stack
from tests.integration.mfa_support import Clock, enrol
from tests.integration.test_approvals import held_decision

# How an operation authenticates, read from its dependencies.
PUBLIC, MEMBER, GATEWAY, PERMISSION = "public", "member", "gateway", "permission"
PLATFORM = "platform"  # a shared platform gateway's `kgp_…` credential (ADR 0012)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]  # the operation object of /openapi.json
    auth: str  # PUBLIC | MEMBER | GATEWAY | PLATFORM | PERMISSION
    permission: tuple[str, str] | None  # (collection, action) of its `requires(...)`

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]


# Routes that check their permission in their own dependency rather than `requires(...)`,
# so the app cannot tell the walkers: (method, path) -> the permission it checks. The bundle
# download also takes a gateway credential (its own organisation's bundle).
PERMISSION_IN_HANDLER: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/api/v1/bundles/{scope}/bundle.tar.gz"): ("bundles", "read"),
}


def _dependencies(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependencies(sub)


def _permission(call: Any) -> tuple[str, str] | None:
    """The (collection, action) a `deps.requires(collection, action)` dependency checks."""
    if not getattr(call, "__name__", "").startswith("requires_"):
        return None
    bound = inspect.getclosurevars(call).nonlocals
    return str(bound["collection"]), str(bound["action"])


def operations(app: FastAPI) -> list[Operation]:
    """Every operation of /openapi.json, with the authentication and permission its route
    declares (the schema and the routes are walked together, so neither can drift)."""
    spec = app.openapi()
    found: list[Operation] = []
    for context in routing.iter_route_contexts(app.routes):
        route = _get_api_route_for_openapi(context)
        if route is None or not route.include_in_schema:
            continue
        calls = list(_dependencies(route.dependant))
        permissions = {p for p in map(_permission, calls) if p is not None}
        assert len(permissions) <= 1, f"{route.path_format} declares {permissions}"
        for method in sorted(route.methods or ()):
            declared = PERMISSION_IN_HANDLER.get((method, route.path_format))
            if declared:
                permissions = {declared}
            if permissions:
                auth = PERMISSION
            elif get_gateway in calls:
                auth = GATEWAY
            elif get_platform in calls:
                auth = PLATFORM
            elif get_principal in calls or get_enroller in calls:
                auth = MEMBER
            else:
                auth = PUBLIC
            operation = spec["paths"][route.path_format][method.lower()]
            found.append(
                Operation(method, route.path_format, operation, auth, next(iter(permissions), None))
            )
    in_schema = sum(len(item) for item in spec["paths"].values())
    assert len(found) == in_schema, f"{in_schema} operations in the schema, {len(found)} routes"
    return found


def body_schema(app: FastAPI, operation: Operation) -> dict[str, Any] | None:
    body = operation.spec.get("requestBody")
    if body is None:
        return None
    schemas = app.openapi()["components"]["schemas"]

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            return resolve(schemas[schema["$ref"].rsplit("/", 1)[1]])
        for option in schema.get("anyOf", []):
            if option.get("type") != "null":
                return resolve(option)
        return schema

    return resolve(body["content"]["application/json"]["schema"])


# -- everything one organisation owns --------------------------------------------------

# Tables that belong to no organisation, and why they need no snapshot here.
GLOBAL_TABLES = {
    "alembic_version": "the schema version",
    "platform_gateways": "the operator's shared gateways (ADR 0012), no tenant's; which "
    "organisations one serves is the tenant-scoped platform_placements",
}


def _owner_filter(table: Table, organization_id: uuid.UUID, user_ids: list[uuid.UUID]) -> Any:
    if "organization_id" in table.c:
        return table.c.organization_id == organization_id
    if table.name == "organizations":
        return table.c.id == organization_id
    if table.name == "users":
        return table.c.id.in_(user_ids)
    if "user_id" in table.c:  # a user's own rows (MFA factors, recovery codes)
        return table.c.user_id.in_(user_ids)
    return None


async def snapshot(stack: Stack, organization_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the organisation owns, in every table of the metadata, sorted."""
    org = uuid.UUID(organization_id)
    taken: dict[str, list[tuple[Any, ...]]] = {}
    async with stack.db.session(SYSTEM) as session:
        memberships = Base.metadata.tables["memberships"]
        user_ids = list(
            (
                await session.scalars(
                    select(memberships.c.user_id).where(memberships.c.organization_id == org)
                )
            ).all()
        )
        for table in Base.metadata.sorted_tables:
            if table.name in GLOBAL_TABLES:
                continue
            where = _owner_filter(table, org, user_ids)
            assert where is not None, f"teach walker_support.snapshot who owns {table.name}"
            rows = (await session.execute(select(table).where(where))).all()
            taken[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return taken


def changed_tables(
    before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    return [name for name in before if before[name] != after[name]]


# -- a full set of objects -------------------------------------------------------------

POLICY = "kind: RolePolicy\nmetadata: {name: extra-roles}\nspec:\n  roles: [{name: reader}]\n"
AGENT = (
    "kind: Agent\nmetadata: {name: bot}\nspec:\n  model: {provider: openai, name: gpt-4o-mini}\n"
)
PIPELINE = "kind: Pipeline\nmetadata: {name: flow}\nspec: {pattern: sequential, agents: [bot]}\n"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _created(response: httpx.Response, *expected: int) -> Any:
    assert response.status_code in (expected or (201,)), response.text
    return response.json()


async def make_objects(client: httpx.AsyncClient, owner: Account, clock: Clock) -> dict[str, Any]:
    """One of every object kind in `owner`'s organisation; returns their ids by name."""
    h = owner.headers
    tag = owner.organization_id[:8]
    member_email = f"m-{tag}@example.com"
    user = await _created(
        await client.post(
            "/api/v1/users",
            json={"email": member_email, "password": PASSWORD, "role": "viewer"},
            headers=h,
        )
    )
    spare = await _created(
        await client.post(
            "/api/v1/users",
            json={"email": f"s-{tag}@example.com", "password": PASSWORD, "role": "viewer"},
            headers=h,
        )
    )
    # The member's second factor (TOTP and recovery codes), enrolled by the member.
    signed_in = await client.post(
        "/api/v1/auth/login", json={"email": member_email, "password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    await enrol(client, _bearer(signed_in.json()["access_token"]), clock)
    team = await _created(await client.post("/api/v1/teams", json={"name": "sre"}, headers=h))
    await _created(
        await client.post(
            f"/api/v1/teams/{team['id']}/members", json={"user_id": user["id"]}, headers=h
        )
    )
    workspace = await _created(
        await client.post(
            "/api/v1/workspaces", json={"name": "prod", "environment": "prod"}, headers=h
        )
    )
    key = await _created(await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=h))
    policy = await _created(
        await client.post("/api/v1/policies", json={"source": POLICY}, headers=h)
    )
    await _created(await client.post("/api/v1/policies/publish", json={}, headers=h))
    gateway = await _created(
        await client.post(
            "/api/v1/gateways",
            json={"name": "edge", "environment": "prod", "url": "http://gw.test"},
            headers=h,
        )
    )
    spare_gateway = await _created(
        await client.post(
            "/api/v1/gateways",
            json={"name": "spare", "environment": "prod", "url": "http://spare.test"},
            headers=h,
        )
    )
    gw = _bearer(gateway["credential"])
    agent = await _created(await client.post("/api/v1/agents", json={"source": AGENT}, headers=h))
    # Deployed by a walk's positive control, so it spends nothing other operations need.
    await _created(
        await client.post(
            "/api/v1/agents", json={"source": AGENT.replace("name: bot", "name: helper")}, headers=h
        )
    )
    pipeline = await _created(
        await client.post("/api/v1/pipelines", json={"source": PIPELINE}, headers=h)
    )
    deployment = await _created(
        await client.post(
            "/api/v1/deployments",
            json={"gateway_id": gateway["id"], "kind": "agent", "name": "bot"},
            headers=h,
        )
    )
    decision_id, approval_id, granted_id = f"d-{tag}", f"a-{tag}", f"g-{tag}"
    deny_id = f"n-{tag}"
    ingested = await client.post(
        "/api/v1/decisions/ingest",
        json={
            "decisions": [
                {
                    "decision_id": decision_id,
                    "time": "2026-11-26T10:00:00Z",
                    "input": {"action": "invoke"},
                    "result": {"outcome": "allow"},
                },
                held_decision(approval_id, f"user:{member_email}", revision="1"),
                held_decision(granted_id, f"user:{member_email}", revision="1"),
                held_decision(deny_id, f"user:{member_email}", revision="1"),
            ]
        },
        headers=gw,
    )
    assert ingested.json() == {"accepted": 4, "duplicates": 0}, ingested.text
    approved = await client.post(f"/api/v1/approvals/{granted_id}/approve", json={}, headers=h)
    assert approved.status_code == 200, approved.text
    opa_decision_id = f"o-{tag}"
    opa = await client.post(
        "/api/v1/decisions/opa",
        json=[
            {
                "decision_id": opa_decision_id,
                "timestamp": "2026-11-26T10:00:02Z",
                "input": {"action": "invoke"},
                "result": True,
            }
        ],
        headers=gw,
    )
    assert opa.json() == {"accepted": 1, "duplicates": 0}, opa.text
    # An event nothing in the walk raises: no delivery attempts change rows meanwhile.
    webhook = await _created(
        await client.post(
            "/api/v1/webhooks",
            json={
                "url": "https://hooks.example.com/in",
                "events": ["security.bundle_verification_failed"],
            },
            headers=h,
        )
    )
    replay = await _created(
        await client.post(
            "/api/v1/policies/replay", json={"since": "2026-11-26T00:00:00Z"}, headers=h
        ),
        202,
    )
    provider = f"p-{tag}"
    await _created(
        await client.put(
            f"/api/v1/secrets/providers/{provider}",
            json={"api_key": "sk-theirs", "provider": "openai"},
            headers=h,
        )
    )
    sso_provider = await _created(
        await client.post(
            "/api/v1/sso/providers",
            json={
                "type": "oidc",
                "name": "corp-idp",
                "issuer": "https://idp.example.com",
                "client_id": "kaizen",
                "client_secret": "idp-secret",
            },
            headers=h,
        )
    )
    domain = await _created(
        await client.post("/api/v1/domains", json={"domain": f"{tag}.example.com"}, headers=h)
    )
    connector = await _created(
        await client.post(
            "/api/v1/connectors",
            json={
                "name": f"db-{tag}".lower(),
                "type": "postgresql",
                # port 9 (discard) refuses at once: a walked test connection fails fast
                "settings": {
                    "host": "127.0.0.1",
                    "port": 9,
                    "database": "shop",
                    "username": "reader",
                    "tls": "disable",
                },
                "password": "their-db-password",
            },
            headers=h,
        )
    )
    reported = await client.post(
        "/api/v1/gateways/self/status",
        json={
            "instance": "sidecar-1",
            "budgets": [
                {
                    "name": f"b-{tag}",
                    "scope": "org",
                    "metric": "executions",
                    "period": "day",
                    "window": "day:2026-11-26",
                    "used": 3,
                    "limit": 10,
                }
            ],
        },
        headers=gw,
    )
    assert reported.status_code == 204, reported.text
    execution_id = f"e-{tag}"
    executions = await client.post(
        "/api/v1/executions/ingest",
        json={
            "executions": [
                {
                    "id": execution_id,
                    "time": "2026-11-26T10:00:03Z",
                    "kind": "agent",
                    "name": "bot",
                    "status": "succeeded",
                    "decision_id": decision_id,
                }
            ]
        },
        headers=gw,
    )
    assert executions.status_code == 200, executions.text
    # The organisation-wide settings, so their rows exist to be watched.
    for method, url, body in (
        ("PUT", "/api/v1/organization/mfa", {"required_roles": []}),
        ("PATCH", "/api/v1/policies/settings", {"require_replay_before_publish": False}),
        ("PUT", "/api/v1/sso/settings", {"sso_required": False}),
    ):
        answered = await client.request(method, url, json=body, headers=h)
        assert answered.status_code == 200, f"{method} {url}: {answered.text}"
    # An ended session (a revocation row), then a live second one the walk may end
    # without ending the session it calls with.
    ended = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    )
    assert ended.status_code == 200, ended.text
    out = await client.post("/api/v1/auth/logout", headers=_bearer(ended.json()["access_token"]))
    assert out.status_code in (200, 204), out.text
    login = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    sessions = (await client.get("/api/v1/me/sessions", headers=h)).json()
    own_sid = _session_of(owner.access_token)
    other = next(s["id"] for s in sessions if s["id"] != own_sid)
    oauth = await _oauth_objects(client, owner, gateway["url"])
    return {
        **oauth,
        "user_id": user["id"],
        "spare_user_id": spare["id"],
        "team_id": team["id"],
        "workspace_id": workspace["id"],
        "key_id": key["id"],
        "policy_id": policy["items"][0]["id"],
        "gateway_id": gateway["id"],
        "spare_gateway_id": spare_gateway["id"],
        "gateway_credential": gateway["credential"],
        "agent_id": agent["items"][0]["id"],
        "pipeline_id": pipeline["items"][0]["id"],
        "deployment_id": deployment["id"],
        "scope": owner.organization_id,
        "decision_id": decision_id,
        "execution_id": execution_id,
        "opa_decision_id": opa_decision_id,
        "approval_id": approval_id,
        "granted_id": granted_id,
        "deny_id": deny_id,
        "replay_id": replay["id"],
        "webhook_id": webhook["id"],
        "provider_id": sso_provider["id"],
        "domain_id": domain["id"],
        "connector_id": connector["id"],
        "session_id": other,
        "provider": provider,
        "version": "1",
    }


async def _oauth_objects(client: httpx.AsyncClient, owner: Account, url: str) -> dict[str, str]:
    """An MCP client, a grant to it and a pending consent request; registration is turned
    off again, so a walk's public register call creates nothing in the victim's."""
    from tests.integration.oauth_support import authorize, enable_registration, register

    issuer = await enable_registration(client, owner.headers)
    client_id = await register(client, issuer)
    await authorize(client, issuer, client_id, url.rstrip("/") + "/mcp", owner.headers)
    pending = await client.get(
        f"/oauth/{owner.organization_id}/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "http://127.0.0.1:33418/callback",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
            "resource": url.rstrip("/") + "/mcp",
        },
    )
    closed = await client.put(
        "/api/v1/oauth/settings",
        json={"dynamic_registration": False, "metadata_documents": True},
        headers=owner.headers,
    )
    assert closed.status_code == 200, closed.text
    grants = (await client.get("/api/v1/oauth/grants", headers=owner.headers)).json()
    clients = (await client.get("/api/v1/oauth/clients", headers=owner.headers)).json()
    return {
        "organization_id": owner.organization_id,
        "request_id": pending.headers["location"].split("request=")[1],
        "grant_id": grants[0]["id"],
        "client_ref": clients["clients"][0]["id"],
    }


def _session_of(access_token: str) -> str:
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sid"])
