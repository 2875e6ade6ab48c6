"""Walk every route of the API: another organisation's object is a 404 on every method,
never appears in a list, and survives the attempt unchanged."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import PASSWORD, Account, Stack, signup

# A valid body for each write route that takes one, so the walk reaches the tenant check
# rather than stopping at validation.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/api/v1/users/{user_id}"): {"role": "developer"},
    ("PATCH", "/api/v1/teams/{team_id}"): {"description": "taken over"},
    ("PATCH", "/api/v1/workspaces/{workspace_id}"): {"description": "taken over"},
    ("PUT", "/api/v1/secrets/providers/{provider}"): {
        "api_key": "sk-taken-over",
        "provider": "openai",
    },
    ("POST", "/api/v1/policies/{policy_id}/replay"): {"since": "2026-11-26T00:00:00Z"},
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): {"description": "taken over"},
    ("PATCH", "/api/v1/sso/providers/{provider_id}"): {"enabled": False},
}


async def _objects_of(client: httpx.AsyncClient, owner: Account) -> dict[str, str]:
    h = owner.headers
    user = await client.post(
        "/api/v1/users",
        json={
            "email": f"m-{owner.user_id[:8]}@example.com",
            "password": PASSWORD,
            "role": "viewer",
        },
        headers=h,
    )
    team = await client.post("/api/v1/teams", json={"name": "sre"}, headers=h)
    await client.post(
        f"/api/v1/teams/{team.json()['id']}/members", json={"user_id": user.json()["id"]}, headers=h
    )
    workspace = await client.post(
        "/api/v1/workspaces", json={"name": "prod", "environment": "prod"}, headers=h
    )
    key = await client.post("/api/v1/api-keys", json={"name": "ci-bot"}, headers=h)
    policy = await client.post("/api/v1/policies", json={"source": POLICY}, headers=h)
    published = await client.post("/api/v1/policies/publish", json={}, headers=h)
    gateway = await client.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://gw.test"},
        headers=h,
    )
    agent = await client.post("/api/v1/agents", json={"source": AGENT}, headers=h)
    pipeline = await client.post("/api/v1/pipelines", json={"source": PIPELINE}, headers=h)
    deployment = await client.post(
        "/api/v1/deployments",
        json={"gateway_id": gateway.json()["id"], "kind": "agent", "name": "bot"},
        headers=h,
    )
    for response in (user, team, workspace, key, policy, published, gateway):
        assert response.status_code == 201, response.text
    for response in (agent, pipeline, deployment):
        assert response.status_code == 201, response.text
    decision_id = f"d-{owner.organization_id}"
    ingested = await client.post(
        "/api/v1/decisions/ingest",
        json={
            "decisions": [
                {
                    "decision_id": decision_id,
                    "time": "2026-11-26T10:00:00Z",
                    "input": {"action": "invoke"},
                    "result": {"outcome": "allow"},
                }
            ]
        },
        headers={"Authorization": f"Bearer {gateway.json()['credential']}"},
    )
    assert ingested.json() == {"accepted": 1, "duplicates": 0}, ingested.text
    approval_id = f"a-{owner.organization_id}"
    held = await client.post(
        "/api/v1/decisions/ingest",
        json={
            "decisions": [
                {
                    "decision_id": approval_id,
                    "time": "2026-11-26T10:00:01Z",
                    "input": {
                        "principal": {"id": "user:someone@example.com"},
                        "action": "deploy",
                        "resource": {"id": "agent:bot"},
                    },
                    "result": {"outcome": "require_approval", "reasons": ["held"]},
                }
            ]
        },
        headers={"Authorization": f"Bearer {gateway.json()['credential']}"},
    )
    assert held.status_code == 200, held.text
    # A stock OPA agent reporting through the OPA decision-log upload format.
    opa_decision_id = f"o-{owner.organization_id}"
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
        headers={"Authorization": f"Bearer {gateway.json()['credential']}"},
    )
    assert opa.json() == {"accepted": 1, "duplicates": 0}, opa.text
    webhook = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/in", "events": ["approval.requested"]},
        headers=h,
    )
    assert webhook.status_code == 201, webhook.text
    replay = await client.post(
        "/api/v1/policies/replay", json={"since": "2026-11-26T00:00:00Z"}, headers=h
    )
    assert replay.status_code == 202, replay.text
    provider = f"p-{owner.organization_id[:8]}"
    stored = await client.put(
        f"/api/v1/secrets/providers/{provider}",
        json={"api_key": "sk-theirs", "provider": "openai"},
        headers=h,
    )
    assert stored.status_code == 201, stored.text
    sso_provider = await client.post(
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
    assert sso_provider.status_code == 201, sso_provider.text
    domain = await client.post("/api/v1/domains", json={"domain": "corp.example.com"}, headers=h)
    assert domain.status_code == 201, domain.text
    budget_name = f"b-{owner.organization_id[:8]}"
    reported = await client.post(
        "/api/v1/gateways/self/status",
        json={
            "instance": "sidecar-1",
            "budgets": [
                {
                    "name": budget_name,
                    "scope": "org",
                    "metric": "executions",
                    "period": "day",
                    "window": "day:2026-11-26",
                    "used": 3,
                    "limit": 10,
                }
            ],
        },
        headers={"Authorization": f"Bearer {gateway.json()['credential']}"},
    )
    assert reported.status_code == 204, reported.text
    own_sessions = await client.get("/api/v1/me/sessions", headers=h)
    assert own_sessions.status_code == 200, own_sessions.text
    return {
        "provider": provider,
        "user_id": user.json()["id"],
        "team_id": team.json()["id"],
        "workspace_id": workspace.json()["id"],
        "key_id": key.json()["id"],
        "policy_id": policy.json()["items"][0]["id"],
        "gateway_id": gateway.json()["id"],
        "agent_id": agent.json()["items"][0]["id"],
        "pipeline_id": pipeline.json()["items"][0]["id"],
        "deployment_id": deployment.json()["id"],
        "scope": owner.organization_id,
        "decision_id": decision_id,
        "opa_decision_id": opa_decision_id,
        "replay_id": replay.json()["id"],
        "approval_id": approval_id,
        "webhook_id": webhook.json()["id"],
        "provider_id": sso_provider.json()["id"],
        "domain_id": domain.json()["id"],
        "session_id": own_sessions.json()[0]["id"],
        "budget_name": budget_name,
        "version": "1",
    }


POLICY = "kind: RolePolicy\nmetadata: {name: extra-roles}\nspec:\n  roles: [{name: reader}]\n"
AGENT = "kind: Agent\nmetadata: {name: bot}\nspec:\n  model: {provider: demo, name: demo}\n"
PIPELINE = "kind: Pipeline\nmetadata: {name: flow}\nspec: {pattern: sequential, agents: [bot]}\n"
# Query parameters a route needs before it reaches the tenant check.
QUERIES: dict[str, str] = {"/api/v1/policies/{policy_id}/diff": "?from=1&to=1"}
# Routes that create the caller's own object under a name: another tenant's name is no clash.
OWN_BY_NAME = {("PUT", "/api/v1/secrets/providers/{provider}")}
# An IdP login flow is public by design: its provider id is how a browser reaches the
# organisation's IdP, no credential is involved (tests/integration/test_sso_*.py cover it).
PUBLIC = re.compile(r"^/api/v1/auth/(oidc|saml)/\{provider_id\}/")
# Values that would show up in any listing anyway (not identifiers).
NOT_SECRET = {"version", "provider"}  # a provider key is named by its caller


def _routes(stack: Stack) -> list[tuple[str, str]]:
    paths = stack.app.openapi()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


async def test_every_route_hides_other_tenants_objects(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    alice, bob = await signup(client, "Alice Corp"), await signup(client, "Bob Corp")
    theirs = await _objects_of(client, alice)
    await _objects_of(client, bob)  # Bob has same-named objects of his own
    before = {
        name: (await client.get(url, headers=alice.headers)).json()
        for name, url in _urls(theirs).items()
    }

    walked = 0
    for method, template in _routes(stack):
        params = re.findall(r"{(\w+)}", template)
        if not params or PUBLIC.match(template):
            continue
        unknown = set(params) - theirs.keys()
        assert not unknown, f"teach this test the path parameter(s) {unknown} of {template}"
        url = template.format(**theirs) + QUERIES.get(template, "")
        body = BODIES.get((method, template))
        if method == "POST" and template.endswith("/members"):
            body = {"user_id": bob.user_id}
        response = await client.request(method, url, json=body, headers=bob.headers)
        if (method, template) in OWN_BY_NAME:
            assert response.status_code == 201, f"{method} {template}: {response.status_code}"
            await client.delete(url, headers=bob.headers)  # Bob's own, made just now
            continue
        assert response.status_code == 404, f"{method} {template}: {response.status_code}"
        assert response.json()["error"]["code"] == "not_found"
        walked += 1
    assert walked >= 10

    for method, template in _routes(stack):
        if method != "GET" or "{" in template or not template.startswith("/api/v1/"):
            continue
        listed = (await client.get(template, headers=bob.headers)).text
        for name, value in theirs.items():
            if name in NOT_SECRET:
                continue
            assert value not in listed, f"GET {template} shows another tenant's {value}"

    after = {
        name: (await client.get(url, headers=alice.headers)).json()
        for name, url in _urls(theirs).items()
    }
    assert after == before


def _urls(ids: dict[str, str]) -> dict[str, str]:
    return {
        "user": f"/api/v1/users/{ids['user_id']}",
        "team": f"/api/v1/teams/{ids['team_id']}",
        "workspace": f"/api/v1/workspaces/{ids['workspace_id']}",
        "key": f"/api/v1/api-keys/{ids['key_id']}",
        "secrets": "/api/v1/secrets",
        "sso_provider": f"/api/v1/sso/providers/{ids['provider_id']}",
        "domain": f"/api/v1/domains/{ids['domain_id']}",
    }


async def test_audit_events_are_per_organisation(client: httpx.AsyncClient) -> None:
    alice, bob = await signup(client, "Alice Corp"), await signup(client, "Bob Corp")
    await client.post("/api/v1/teams", json={"name": "secret-project"}, headers=alice.headers)
    events = (await client.get("/api/v1/audit-events", headers=bob.headers)).json()["items"]
    assert [e["action"] for e in events] == ["organization.create"]
    assert "secret-project" not in str(events)
