"""The policies API: drafts, versions, simulate, tests gating publish, signed bundles."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from control_plane.services import policies
from policy.bundles.bundle import load_bundle
from policy.errors import BundleVerificationError
from tests.conftest import Account, Stack, member

POLICIES = """\
apiVersion: kaizen.studio/v1
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke, deploy]}]
  bindings:
    - {subject: "user:alice@example.com", role: agent-user}
    - {subject: "team:research", role: agent-user}
---
kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "mcp tool shell is forbidden" if input.tool.name == "shell"
    require_approval contains "deploys to prod need approval" if {
      input.action == "deploy"
      input.resource.workspace == "prod"
    }
---
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
    - {name: research-monthly, scope: "team:research", metric: cost_usd, limit: 500, period: month}
"""

TESTS = """\
kind: PolicyTest
metadata: {name: guardrail-tests}
spec:
  cases:
    - name: alice may invoke
      input: {principal: {id: "user:alice@example.com", type: user}, action: invoke,
              resource: {type: agent, id: "agent:support-bot"}, channel: api}
      expect: {outcome: allow}
"""


def _input(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "principal": {"id": "user:alice@example.com", "type": "user", "teams": []},
        "action": "invoke",
        "resource": {"type": "agent", "id": "agent:support-bot", "workspace": "dev"},
        "channel": "api",
    }
    base.update(overrides)
    return base


async def _apply(client: httpx.AsyncClient, who: Account, source: str) -> httpx.Response:
    return await client.post("/api/v1/policies", json={"source": source}, headers=who.headers)


async def _simulate(client: httpx.AsyncClient, who: Account, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/policies/simulate", json={"input": _input(**overrides)}, headers=who.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _publish(client: httpx.AsyncClient, who: Account) -> httpx.Response:
    return await client.post("/api/v1/policies/publish", json={}, headers=who.headers)


async def _jwks(client: httpx.AsyncClient, who: Account) -> dict[str, Any]:
    """The organisation's bundle keys: the only keys its sidecars trust."""
    body: dict[str, Any] = (
        await client.get(f"/api/v1/bundles/{who.organization_id}/jwks.json")
    ).json()
    return body


def _bundle_url(who: Account) -> str:
    return f"/api/v1/bundles/{who.organization_id}/bundle.tar.gz"


async def test_author_simulate_publish_download_verify(
    client: httpx.AsyncClient, owner: Account
) -> None:
    created = await _apply(client, owner, POLICIES + "---\n" + TESTS)
    assert created.status_code == 201, created.text
    assert sorted(created.json()["created"]) == [
        "agent-roles",
        "guardrail-tests",
        "guardrails",
        "spend",
    ]
    assert {p["status"] for p in created.json()["items"]} == {"draft"}

    allow = await _simulate(client, owner)
    assert allow["outcome"] == "allow", allow
    deny = await _simulate(client, owner, tool={"name": "shell", "arguments": {}}, channel="mcp")
    assert deny["outcome"] == "deny"
    assert "mcp tool shell is forbidden" in deny["reasons"]
    held = await _simulate(
        client,
        owner,
        action="deploy",
        resource={"type": "agent", "id": "agent:support-bot", "workspace": "prod"},
    )
    assert held["outcome"] == "require_approval"
    assert "deploys to prod need approval" in held["reasons"]
    stranger = await _simulate(client, owner, principal={"id": "user:eve@example.com"})
    assert stranger["outcome"] == "deny"

    published = await _publish(client, owner)
    assert published.status_code == 201, published.text
    revision = published.json()
    assert revision["revision"] == 1
    assert revision["scope"] == owner.organization_id
    assert revision["policies"]["guardrails"] == 1

    listed = await client.get("/api/v1/policies", headers=owner.headers)
    assert {p["status"] for p in listed.json()["items"]} == {"published"}

    download = await client.get(_bundle_url(owner), headers=owner.headers)
    assert download.status_code == 200
    assert download.headers["etag"] == '"1"'
    verified = load_bundle(
        download.content, await _jwks(client, owner), scope=owner.organization_id
    )
    assert verified.revision == "1"
    assert verified.key_id == revision["key_id"]

    tampered = bytearray(download.content)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(BundleVerificationError):
        load_bundle(bytes(tampered), await _jwks(client, owner), scope=owner.organization_id)

    not_modified = await client.get(
        _bundle_url(owner), headers={**owner.headers, "If-None-Match": '"1"'}
    )
    assert not_modified.status_code == 304


async def test_malformed_rego_is_a_422_with_line_and_column(
    client: httpx.AsyncClient, owner: Account
) -> None:
    source = POLICIES.replace('input.tool.name == "shell"', 'input.tool.name == = "shell"')
    response = await _apply(client, owner, source)
    assert response.status_code == 422
    error = response.json()["error"]
    rego = [d for d in error["details"] if d["document"] == 1]
    assert rego, error
    assert rego[0]["line"] == 18  # the line in the YAML source where the Rego is wrong
    assert rego[0]["column"] is not None
    assert (await client.get("/api/v1/policies", headers=owner.headers)).json()["items"] == []

    validated = await client.post(
        "/api/v1/policies/validate", json={"source": source}, headers=owner.headers
    )
    assert validated.status_code == 200
    assert validated.json()["valid"] is False
    assert validated.json()["details"][0]["line"] == 18


async def test_binding_to_an_undefined_role_is_rejected_across_documents(
    client: httpx.AsyncClient, owner: Account
) -> None:
    response = await _apply(
        client,
        owner,
        "kind: RolePolicy\nmetadata: {name: extra}\nspec:\n  bindings:\n"
        "    - {subject: 'user:bob@example.com', role: no-such-role}\n",
    )
    assert response.status_code == 422
    assert "no-such-role" in response.text


async def test_failing_policy_test_refuses_publish_and_keeps_the_bundle(
    client: httpx.AsyncClient, owner: Account
) -> None:
    assert (await _apply(client, owner, POLICIES + "---\n" + TESTS)).status_code == 201
    assert (await _publish(client, owner)).status_code == 201
    before = (await client.get(_bundle_url(owner), headers=owner.headers)).content

    broken = TESTS.replace("expect: {outcome: allow}", "expect: {outcome: deny}")
    assert (await _apply(client, owner, broken)).status_code == 201
    refused = await _publish(client, owner)
    assert refused.status_code == 409
    failures = refused.json()["error"]["details"]
    assert failures[0]["case"] == "alice may invoke"
    assert "expected deny, got allow" in failures[0]["diff"]

    after = await client.get(_bundle_url(owner), headers=owner.headers)
    assert after.content == before
    assert after.headers["etag"] == '"1"'
    tests = await client.post("/api/v1/policies/test", json={}, headers=owner.headers)
    assert tests.json()["passed"] is False
    assert tests.json()["total"] == 1


async def test_versions_diff_delete_and_rollback(client: httpx.AsyncClient, owner: Account) -> None:
    await _apply(client, owner, POLICIES)
    assert (await _publish(client, owner)).status_code == 201
    changed = POLICIES.replace("limit: 500", "limit: 750")
    updated = await _apply(client, owner, changed)
    assert updated.json()["updated"] == ["spend"]
    assert sorted(updated.json()["unchanged"]) == ["agent-roles", "guardrails"]
    spend = next(p for p in updated.json()["items"] if p["name"] == "spend")
    assert (spend["latest_version"], spend["published_version"], spend["status"]) == (
        2,
        1,
        "draft",
    )

    versions = await client.get(f"/api/v1/policies/{spend['id']}/versions", headers=owner.headers)
    assert [(v["version"], v["published"]) for v in versions.json()["items"]] == [
        (2, False),
        (1, True),
    ]
    diff = await client.get(
        f"/api/v1/policies/{spend['id']}/diff", params={"from": 1, "to": 2}, headers=owner.headers
    )
    assert "-    - {name: research-monthly" in diff.json()["diff"]
    assert "limit: 750" in diff.json()["diff"]

    assert (await _publish(client, owner)).json()["revision"] == 2
    rolled = await client.post(
        "/api/v1/policies/rollback", json={"revision": 1}, headers=owner.headers
    )
    assert rolled.status_code == 201
    assert rolled.json()["revision"] == 3
    assert rolled.json()["policies"]["spend"] == 1

    guardrails = next(p for p in updated.json()["items"] if p["name"] == "guardrails")
    deleted = await client.delete(f"/api/v1/policies/{guardrails['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    republished = await _publish(client, owner)
    assert "guardrails" not in republished.json()["policies"]
    held = await _simulate(
        client,
        owner,
        action="deploy",
        resource={"type": "agent", "id": "agent:x", "workspace": "prod"},
    )
    assert held["outcome"] == "allow"
    bundles = await client.get("/api/v1/bundles", headers=owner.headers)
    assert [b["revision"] for b in bundles.json()["items"]] == [1, 2, 3, 4]
    assert [b["reason"] for b in bundles.json()["items"]][2] == "rollback"


async def test_roles_viewer_simulates_but_cannot_author_or_publish(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _apply(client, owner, POLICIES)
    viewer = await member(client, owner, "viewer")
    auditor = await member(client, owner, "auditor")
    security = await member(client, owner, "security_admin")
    developer = await member(client, owner, "developer")
    assert (await _apply(client, viewer, POLICIES)).status_code == 403
    assert (await _apply(client, developer, POLICIES)).status_code == 403
    assert (await _publish(client, auditor)).status_code == 403
    assert (await _simulate(client, viewer))["outcome"] == "allow"
    assert (await client.get("/api/v1/policies", headers=auditor.headers)).status_code == 200
    assert (await _publish(client, security)).status_code == 201


async def test_long_poll_wakes_on_publish(client: httpx.AsyncClient, owner: Account) -> None:
    await _apply(client, owner, POLICIES)
    assert (await _publish(client, owner)).status_code == 201

    async def poll() -> httpx.Response:
        return await client.get(
            _bundle_url(owner),
            headers={**owner.headers, "If-None-Match": '"1"', "Prefer": "wait=20"},
        )

    waiting = asyncio.create_task(poll())
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await _apply(client, owner, POLICIES.replace("limit: 500", "limit: 600"))
    assert (await _publish(client, owner)).status_code == 201
    answer = await asyncio.wait_for(waiting, 10)
    assert answer.status_code == 200
    assert answer.headers["etag"] == '"2"'


async def test_long_poll_times_out_with_304(client: httpx.AsyncClient, owner: Account) -> None:
    await _apply(client, owner, POLICIES)
    await _publish(client, owner)
    answer = await client.get(
        _bundle_url(owner), headers={**owner.headers, "If-None-Match": '"1"', "Prefer": "wait=1"}
    )
    assert answer.status_code == 304


async def test_a_long_poll_ends_when_its_client_leaves(
    stack: Stack, client: httpx.AsyncClient, owner: Account
) -> None:
    """A sidecar stopped mid long-poll: its request ends then, not at the end of its wait
    (which held every restart of the control plane for its graceful-shutdown period)."""
    await _apply(client, owner, POLICIES)
    assert (await _publish(client, owner)).status_code == 201
    left = asyncio.Event()
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if received == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = _bundle_url(owner)
    headers = {**owner.headers, "If-None-Match": '"1"', "Prefer": "wait=60", "Host": "cp.test"}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.7", 4711),
        "server": ("cp.test", 80),
    }
    polling = asyncio.create_task(stack.app(scope, receive, send))
    await asyncio.sleep(0.3)
    assert not polling.done()  # parked in its wait
    left.set()
    await asyncio.wait_for(polling, 10)  # the wait asked for was 60 s
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == [499]  # no bundle built for nobody


async def test_nothing_published_is_a_404(client: httpx.AsyncClient, owner: Account) -> None:
    answer = await client.get(_bundle_url(owner), headers=owner.headers)
    assert answer.status_code == 404
    published_sim = await client.post(
        "/api/v1/policies/simulate", json={"input": _input(), "draft": False}, headers=owner.headers
    )
    assert published_sim.status_code == 404


async def test_bad_simulation_input_is_a_deny_not_a_500(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _apply(client, owner, POLICIES)
    response = await client.post(
        "/api/v1/policies/simulate",
        json={"input": {"principal": "nobody", "action": 7}},
        headers=owner.headers,
    )
    assert response.status_code == 200
    assert response.json()["outcome"] == "deny"


async def test_api_key_changes_re_sign_the_bundle(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """A revoked key leaves the bundle sidecars enforce from, at once."""
    await _apply(client, owner, POLICIES)
    assert (await _publish(client, owner)).status_code == 201
    created = await client.post(
        "/api/v1/api-keys", json={"name": "ci-bot", "role": "developer"}, headers=owner.headers
    )
    bundles = (await client.get("/api/v1/bundles", headers=owner.headers)).json()["items"]
    assert [(b["revision"], b["reason"]) for b in bundles] == [(1, "publish"), (2, "refresh")]
    data = await client.get(_bundle_url(owner), headers=owner.headers)
    verified = load_bundle(data.content, await _jwks(client, owner), scope=owner.organization_id)
    names = {k["name"] for k in verified.compiled.kaizen["api_keys"].values()}
    assert names == {"ci-bot"}

    await client.delete(f"/api/v1/api-keys/{created.json()['id']}", headers=owner.headers)
    data = await client.get(_bundle_url(owner), headers=owner.headers)
    assert data.headers["etag"] == '"3"'
    verified = load_bundle(data.content, await _jwks(client, owner), scope=owner.organization_id)
    assert verified.compiled.kaizen["api_keys"] == {}


async def test_key_rotation_re_signs_every_published_bundle(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    """After `keys rotate`, each bundle is signed by its organisation's new bundle key and
    carries the new platform key, so sidecars accept access tokens signed with it."""
    await _apply(client, owner, POLICIES)
    await _publish(client, owner)
    keys = stack.app.state.keys
    new_kid = await keys.rotate()
    rotated = dict(await keys.rotate_every_organization())
    refreshed = await policies.refresh_everywhere(stack.db, keys, why="test", issuer="kaizen")
    assert [(str(org), revision) for org, revision in refreshed] == [(owner.organization_id, 2)]
    data = await client.get(_bundle_url(owner), headers=owner.headers)
    verified = load_bundle(data.content, await _jwks(client, owner), scope=owner.organization_id)
    assert verified.key_id == rotated[uuid.UUID(owner.organization_id)]
    assert new_kid in {k["kid"] for k in verified.compiled.kaizen["jwks"]["keys"]}
