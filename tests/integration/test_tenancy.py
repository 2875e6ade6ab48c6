"""The tenancy walker: every operation of /openapi.json, with another organisation's ids in
its path, query and body (one at a time), is a 404 that changes nothing; the same request
with the caller's own ids succeeds (the positive control); every list answers 200 without
the other organisation's ids. "Nothing changed" is every row the victim owns, in every
table of the metadata (walker_support.snapshot)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from control_plane.db.models import ApprovalRequest
from control_plane.db.session import SYSTEM
from tests.conftest import PASSWORD, Account, Stack, signup
from tests.integration.mfa_support import Clock
from tests.integration.walker_support import (
    AGENT,
    GATEWAY,
    PIPELINE,
    PLATFORM,
    POLICY,
    PUBLIC,
    Operation,
    body_schema,
    changed_tables,
    make_objects,
    operations,
    snapshot,
)

# How to drive each operation that needs a body: `{name}` is an id of the caller's or of
# the victim's organisation (one at a time). A body field named `*_id`/`*_ids` in the schema
# must be driven here, so ids passed in bodies are walked too.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/api/v1/users/{user_id}"): {"role": "developer"},
    ("PATCH", "/api/v1/teams/{team_id}"): {"description": "taken over"},
    ("POST", "/api/v1/teams/{team_id}/members"): {"user_id": "{spare_user_id}"},
    ("PATCH", "/api/v1/workspaces/{workspace_id}"): {"description": "taken over"},
    ("PATCH", "/api/v1/sso/providers/{provider_id}"): {"enabled": False},
    ("PUT", "/api/v1/sso/settings"): {
        "sso_required": False,
        "break_glass_user_ids": ["{owner_id}"],
    },
    ("POST", "/api/v1/approvals/{approval_id}/approve"): {"comment": "ok"},
    ("POST", "/api/v1/oauth/requests/{request_id}"): {"approve": True},
    ("PUT", "/api/v1/oauth/clients/{client_ref}/blocked"): {"blocked": False},
    ("PUT", "/api/v1/oauth/settings"): {"dynamic_registration": False, "metadata_documents": True},
    ("POST", "/api/v1/approvals/{approval_id}/deny"): {"comment": "no"},
    ("POST", "/api/v1/approvals/grants/redeem"): {"jti": "{grant_jti}"},
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): {"description": "taken over"},
    ("POST", "/api/v1/webhooks/{webhook_id}/secret"): {"secret": "s" * 32},
    ("POST", "/api/v1/policies/{policy_id}/replay"): {"since": "2026-11-26T00:00:00Z"},
    ("PUT", "/api/v1/secrets/providers/{provider}"): {"api_key": "sk-mine", "provider": "openai"},
    ("POST", "/api/v1/deployments"): {
        "gateway_id": "{gateway_id}",
        "kind": "agent",
        "name": "helper",
    },
    # Operations that reference nothing of another tenant's: a valid-looking body each, so
    # the walk reaches the handler (it must still leave the other tenant untouched).
    ("POST", "/api/v1/auth/signup"): {
        "email": "new@example.com",
        "password": PASSWORD,
        "organization": "New",
    },
    ("POST", "/api/v1/auth/refresh"): {"refresh_token": "krt_not-a-token"},
    ("POST", "/api/v1/me/mfa/totp/confirm"): {"code": "000000"},
    ("DELETE", "/api/v1/me/mfa/totp"): {"code": "000000"},
    ("PUT", "/api/v1/organization/mfa"): {"required_roles": []},
    ("POST", "/api/v1/me/password"): {"current": "not the password", "new": PASSWORD + "!"},
    ("POST", "/api/v1/users"): {"email": "another@example.com", "password": PASSWORD},
    ("POST", "/api/v1/teams"): {"name": "another"},
    ("POST", "/api/v1/workspaces"): {"name": "another", "environment": "dev"},
    ("POST", "/api/v1/api-keys"): {"name": "another"},
    ("POST", "/api/v1/gateways/self/status"): {"instance": "sidecar-2"},
    ("POST", "/api/v1/gateways"): {"name": "another", "environment": "dev", "url": "http://a.test"},
    ("POST", "/api/v1/sso/providers"): {
        "type": "oidc",
        "name": "another",
        "issuer": "https://idp2.example.com",
        "client_id": "kaizen",
        "client_secret": "idp-secret",
    },
    ("POST", "/api/v1/auth/sso/exchange"): {"code": "not-a-code"},
    ("POST", "/api/v1/auth/sso/link"): {"link_code": "not-a-code", "password": PASSWORD},
    ("POST", "/api/v1/domains"): {"domain": "another.example.com"},
    ("POST", "/api/v1/connectors"): {
        "name": "another-db",
        "type": "mysql",
        "settings": {"host": "127.0.0.1", "port": 9, "database": "shop", "username": "r"},
    },
    ("PATCH", "/api/v1/connectors/{connector_id}"): {"password": "taken-over"},
    ("POST", "/api/v1/billing/checkout"): {"plan": "pro"},
    ("POST", "/api/v1/webhooks"): {
        "url": "https://hooks.example.com/two",
        "events": ["security.bundle_verification_failed"],
    },
    ("PATCH", "/api/v1/policies/settings"): {"require_replay_before_publish": False},
    ("POST", "/api/v1/policies/replay"): {"since": "2026-11-26T00:00:00Z"},
    ("POST", "/api/v1/policies"): {"source": POLICY},
    ("POST", "/api/v1/policies/validate"): {"source": POLICY},
    ("POST", "/api/v1/policies/simulate"): {"input": {"action": "invoke"}},
    ("POST", "/api/v1/policies/rollback"): {"revision": 1},
    ("POST", "/api/v1/decisions/ingest"): {"decisions": []},
    ("POST", "/api/v1/platform/organizations/{organization_id}/decisions/ingest"): {
        "decisions": []
    },
    ("POST", "/api/v1/platform/organizations/{organization_id}/executions/ingest"): {
        "executions": []
    },
    ("POST", "/api/v1/platform/organizations/{organization_id}/status"): {"instance": "shared-1"},
    ("PUT", "/api/v1/decisions/retention"): {"retention_days": 90},
    ("POST", "/api/v1/executions/ingest"): {"executions": []},
    ("POST", "/api/v1/agents"): {"source": AGENT},
    ("POST", "/api/v1/pipelines"): {"source": PIPELINE},
    ("POST", "/api/v1/auth/login"): {
        "email": "{owner_email}",
        "password": PASSWORD,
        "organization_id": "{scope}",
    },
    ("POST", "/api/v1/auth/session"): {
        "email": "{owner_email}",
        "password": PASSWORD,
        "organization_id": "{scope}",
    },
}
# Query parameters an operation needs, or that carry ids (templated like BODIES).
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/v1/policies/{policy_id}/diff"): {"from": "1", "to": "1"},
    ("GET", "/api/v1/deployments"): {"gateway_id": "{gateway_id}"},
    ("GET", "/api/v1/decisions"): {"gateway": "{gateway_id}", "decision_id": "{decision_id}"},
    ("GET", "/api/v1/decisions/export"): {"decision_id": "{decision_id}"},
    ("GET", "/api/v1/decisions/aggregates"): {"decision_id": "{decision_id}"},
    ("GET", "/api/v1/auth/oidc/{provider_id}/callback"): {"state": "not-a-state", "code": "x"},
    ("GET", "/api/v1/audit-events"): {"actor_id": "{user_id}"},
    ("GET", "/api/v1/auth/sso/discover"): {"email": "someone@{domain}"},
}
# A path parameter an operation takes from another object than its name says: the
# positive control must not spend an object later operations need.
ALIASES: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/api/v1/gateways/{gateway_id}/credential"): {"gateway_id": "spare_gateway_id"},
    ("DELETE", "/api/v1/gateways/{gateway_id}"): {"gateway_id": "spare_gateway_id"},
    ("POST", "/api/v1/approvals/{approval_id}/deny"): {"approval_id": "deny_id"},
}
# Body fields named like ids that name no object of ours: a sidecar reports the bundle key
# id it verified with; an IdP's OAuth client id is the IdP's.
NOT_OBJECT_IDS = {"key_id", "client_id"}
# What a cross-tenant reference answers where 404 is not the right refusal: logging in
# to an organisation one is not a member of is the same 401 as a wrong password.
REFUSED_WITH = {
    ("POST", "/api/v1/auth/login"): 401,
    ("POST", "/api/v1/auth/session"): 401,
    # Break-glass users must be owners of this organisation: another's is "not an owner",
    # the same answer as for any id that is not one (nothing about it is revealed).
    ("PUT", "/api/v1/sso/settings"): 422,
}
# A positive control that cannot succeed without an outside party: the caller's own domain
# is found and its TXT record looked up (no DNS server here), which a route that always
# refused would never get to. tests/integration/test_domains.py verifies with a real one.
OWN_ANSWER = {("POST", "/api/v1/domains/{domain_id}/verify"): 422}
# Values that are not secrets of the organisation, so not walked as ids nor leak-checked:
# a version number, a provider key's name (chosen by its caller), the caller's own email.
NOT_IDS = {"version", "provider", "owner_email", "domain"}
# Creating the caller's own object under a name: the other organisation's name is no clash.
OWN_BY_NAME = {("PUT", "/api/v1/secrets/providers/{provider}")}
# Public by design, reached with the victim's ids and no credential: a browser starting an
# SSO login or fetching SAML metadata names the organisation's provider; a bundle scope's
# public keys are public. They must still change nothing the victim owns.
PUBLIC_REACH = re.compile(
    r"^/api/v1/(auth/(oidc|saml)/\{provider_id\}/|auth/sso/discover$|bundles/\{scope\}/jwks\.json$)"
    # The MCP authorization server: an issuer is public (metadata, authorize, token, and
    # registration where the organisation opened it).
    r"|^(/\.well-known/[a-z-]+)?/oauth/\{organization_id\}"
    # The operator's shared platform gateway (ADR 0012; PLATFORM): no tenant credential
    # reaches it; what its own credential reaches is tests/integration/test_platform_gateways.py.
    r"|^/api/v1/platform/"
)
# GETs without a path id that answer settings or a summary rather than objects, so there
# are no ids of the caller's to show (every other list must show some: its positive control).
SUMMARIES = {
    "/api/v1/me/mfa",
    "/api/v1/organization/mfa",
    "/api/v1/audit-events/verify",
    "/api/v1/sso/settings",
    "/api/v1/budgets",
    "/api/v1/policies/settings",
    "/api/v1/decisions/aggregates",
    "/api/v1/decisions/verify",
    "/api/v1/decisions/retention",
    "/api/v1/plan",
    "/api/v1/usage/totals",
    "/api/v1/billing",
    "/api/v1/billing/invoices",  # Stripe's, none without it (test_billing_stripe.py)
}
# The order DELETEs run in (their positive controls spend the caller's objects).
DELETE_ORDER = [
    "/api/v1/teams/{team_id}/members/{user_id}",
    "/api/v1/me/sessions/{session_id}",
    "/api/v1/deployments/{deployment_id}",
    "/api/v1/pipelines/{pipeline_id}",
    "/api/v1/agents/{agent_id}",
    "/api/v1/policies/{policy_id}",
    "/api/v1/gateways/{gateway_id}",
]
# Operations that end the caller's own session or credential: walked last.
SPENDS_CALLER = {
    ("POST", "/api/v1/auth/logout"),
    ("DELETE", "/api/v1/auth/session"),
    ("DELETE", "/api/v1/me/sessions"),
}


def _fill(template: Any, ids: dict[str, Any]) -> Any:
    if isinstance(template, str):
        match = re.fullmatch(r"\{(\w+)\}", template)
        if match:
            return ids[match.group(1)]
        return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), template)
    if isinstance(template, list):
        return [_fill(item, ids) for item in template]
    if isinstance(template, dict):
        return {key: _fill(value, ids) for key, value in template.items()}
    return template


def _placeholders(template: Any) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", json.dumps(template)))


def _order(ops: list[Operation]) -> list[Operation]:
    def key(op: Operation) -> tuple[int, int]:
        if (op.method, op.path) in SPENDS_CALLER:
            return (3, 0)
        if op.method != "DELETE":
            return (0, 0)
        return (1, DELETE_ORDER.index(op.path)) if op.path in DELETE_ORDER else (2, 0)

    return sorted(ops, key=key)


class Walk:
    """One operation's requests: the caller's ids, with some swapped for the victim's."""

    def __init__(self, stack: Stack, op: Operation, mine: dict[str, Any], theirs: dict[str, Any]):
        self.op, self.mine, self.theirs = op, mine, theirs
        key = (op.method, op.path)
        aliases = ALIASES.get(key, {})
        self.path = re.sub(
            r"\{(\w+)\}", lambda m: "{" + aliases.get(m.group(1), m.group(1)) + "}", op.path
        )
        self.query = QUERIES.get(key, {})
        self.body = BODIES.get(key)
        schema = body_schema(stack.app, op)
        required_body = bool(op.spec.get("requestBody", {}).get("required"))
        self.problems: list[str] = []
        if self.body is None and required_body and schema and schema.get("required"):
            self.problems.append(f"a body for {op}")
        for field in (schema or {}).get("properties", {}):
            if field in NOT_OBJECT_IDS:
                continue
            if field.endswith(("_id", "_ids")) and field not in (self.body or {}):
                self.problems.append(f"{op}'s body id {field}")
        for parameter in op.parameters("query"):
            name = parameter["name"]
            needed = parameter.get("required") or name.endswith("_id")
            if needed and name not in self.query:
                self.problems.append(f"{op}'s ?{name}")
        self.references = sorted(
            name
            for name in _placeholders([self.path, self.query, self.body])
            if name not in NOT_IDS
        )
        unknown = set(self.references) - mine.keys()
        if unknown:
            self.problems.append(f"the id(s) {unknown} of {op}")

    def request(self, swapped: str | None) -> tuple[str, dict[str, str], Any]:
        ids = dict(self.mine)
        if swapped is not None:
            ids[swapped] = self.theirs[swapped]
        return _fill(self.path, ids), _fill(self.query, ids), _fill(self.body, ids)


def _shows_any(answered: httpx.Response, ids: dict[str, Any]) -> bool:
    return any(
        name not in NOT_IDS and isinstance(value, str) and value in answered.text
        for name, value in ids.items()
    )


def _assert_no_leak(op: Operation, answered: httpx.Response, theirs: dict[str, Any]) -> None:
    for name, value in theirs.items():
        if name not in NOT_IDS and isinstance(value, str):
            assert value not in answered.text, f"{op} shows the other tenant's {name}"


async def _grant_jti(stack: Stack, organization_id: str, request_id: str) -> str:
    async with stack.db.session(SYSTEM) as session:
        jti = await session.scalar(
            select(ApprovalRequest.grant_jti).where(
                ApprovalRequest.organization_id == uuid.UUID(organization_id),
                ApprovalRequest.request_id == request_id,
            )
        )
    assert jti, f"no grant for {request_id}"
    return str(jti)


async def _setup(
    client: httpx.AsyncClient, stack: Stack, who: Account, clock: Clock
) -> dict[str, Any]:
    ids = await make_objects(client, who, clock)
    ids["grant_jti"] = await _grant_jti(stack, who.organization_id, ids["granted_id"])
    ids["owner_email"] = who.email
    ids["owner_id"] = who.user_id
    ids["domain"] = f"{who.organization_id[:8]}.example.com"
    return ids


async def test_every_operation_hides_other_tenants_objects(
    client: httpx.AsyncClient, stack: Stack, clock: Clock
) -> None:
    alice, bob = await signup(client, "Alice Corp"), await signup(client, "Bob Corp")
    theirs = await _setup(client, stack, alice, clock)
    mine = await _setup(client, stack, bob, clock)  # Bob has same-named objects of his own
    baseline = await snapshot(stack, alice.organization_id)
    headers = {
        "member": bob.headers,
        GATEWAY: {"Authorization": f"Bearer {mine['gateway_credential']}"},
        PUBLIC: {},
    }

    ops = _order(operations(stack.app))
    walks = [Walk(stack, op, mine, theirs) for op in ops]
    untaught = [problem for walk in walks for problem in walk.problems]
    assert not untaught, "teach the tenancy walker:\n" + "\n".join(untaught)
    cross = lists = other = 0
    for walk in walks:
        op = walk.op
        sent = headers.get(op.auth, bob.headers)
        key = (op.method, op.path)
        if op.method == "GET" and "{" not in op.path and op.auth not in (PUBLIC, PLATFORM):
            # A list: 200, and nothing of the victim's, even when filtered by their ids.
            for swapped in [None, *walk.references]:
                path, query, _ = walk.request(swapped)
                listed = await client.get(path, params=query, headers=sent)
                assert listed.status_code == 200, f"{op} ({swapped}): {listed.text}"
                _assert_no_leak(op, listed, theirs)
                # The list's positive control: it does show the caller's own objects.
                if swapped is None and op.path not in SUMMARIES:
                    assert _shows_any(listed, mine), f"{op} shows none of the caller's objects"
            lists += 1
            continue
        if op.auth in (PUBLIC, PLATFORM) and PUBLIC_REACH.match(op.path):
            path, query = _fill(walk.path, theirs), _fill(walk.query, theirs)
            answered = await client.request(op.method, path, params=query, json=walk.body)
            assert answered.status_code < 500, f"{op}: {answered.text}"
            assert not changed_tables(baseline, await snapshot(stack, alice.organization_id)), op
            other += 1
            continue
        if not walk.references or key in SPENDS_CALLER:
            # Nothing of the victim's to name: it must still leave all of it untouched.
            path, query, body = walk.request(None)
            answered = await client.request(op.method, path, params=query, json=body, headers=sent)
            assert answered.status_code < 500, f"{op}: {answered.text}"
            changed = changed_tables(baseline, await snapshot(stack, alice.organization_id))
            assert not changed, f"{op} changed the other tenant's {changed}"
            other += 1
            continue
        for swapped in walk.references:
            path, query, body = walk.request(swapped)
            answered = await client.request(op.method, path, params=query, json=body, headers=sent)
            if key in OWN_BY_NAME:
                assert answered.status_code == 201, f"{op}: {answered.text}"
                continue
            expected = REFUSED_WITH.get(key, 404)
            assert answered.status_code == expected, f"{op} with their {swapped}: {answered.text}"
            changed = changed_tables(baseline, await snapshot(stack, alice.organization_id))
            assert not changed, f"{op} with their {swapped} changed {changed}"
        # The positive control: the same request with the caller's own ids succeeds, so
        # the 404 above came from the tenant check, not from a route that always refuses.
        path, query, body = walk.request(None)
        answered = await client.request(op.method, path, params=query, json=body, headers=sent)
        if key in OWN_ANSWER:
            assert answered.status_code == OWN_ANSWER[key], f"{op} own ids: {answered.text}"
        else:
            assert 200 <= answered.status_code < 300, f"{op} own ids: {answered.text}"
        _assert_no_leak(op, answered, theirs)
        cross += 1

    filled = [name for name, rows in baseline.items() if rows]
    print(
        f"tenancy walker: {len(ops)} operations: {cross} with ids, {lists} lists, {other} other;"
        f" snapshot of {len(baseline)} tables ({len(filled)} with the victim's rows,"
        f" {sum(map(len, baseline.values()))} rows)"
    )
    assert cross + lists + other == len(ops)
    assert not changed_tables(baseline, await snapshot(stack, alice.organization_id))


async def test_audit_events_are_per_organisation(client: httpx.AsyncClient) -> None:
    alice, bob = await signup(client, "Alice Corp"), await signup(client, "Bob Corp")
    await client.post("/api/v1/teams", json={"name": "secret-project"}, headers=alice.headers)
    events = (await client.get("/api/v1/audit-events", headers=bob.headers)).json()["items"]
    assert [e["action"] for e in events] == ["organization.create"]
    assert "secret-project" not in str(events)
