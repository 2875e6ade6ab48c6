"""Shared platform gateways on the control plane (ADR 0012), on both stacks: the operator's
gateway, which organisations it serves, what its credential may read and what ingest
files under whom. Each attack is performed: an organisation the gateway does not serve is
not in its manifest, its bundle is not readable, and a decision forged for it is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt

from control_plane.db.session import SYSTEM
from control_plane.schemas.identity import SignupRequest
from control_plane.services import identity, platform_gateways
from policy.bundles.gateway_binding import binding_of_credential
from tests.conftest import PASSWORD, Account, Stack, member, signup
from tests.integration.plan_support import OPERATOR, add_gateway
from tests.integration.test_approvals import held_decision

POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "apikey:ci-bot", role: agent-user}
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def shared_gateway(stack: Stack, name: str = "shared-eu") -> str:
    """The operator registers a platform gateway; its credential."""
    async with stack.db.session(SYSTEM) as session:
        _gateway, credential = await platform_gateways.create(
            session, name=name, url="https://shared.example.test"
        )
    return credential


async def free_signup(client: httpx.AsyncClient, stack: Stack, organization: str) -> Account:
    """A new organisation on Free (as the product's sign-up), logged in."""
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    body = SignupRequest(email=email, password=PASSWORD, organization=organization)
    await identity.signup(stack.db, body, None, None, plan="free")
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    out = login.json()
    return Account(
        email, out["user_id"], out["organization_id"], out["access_token"], out["refresh_token"]
    )


async def place(stack: Stack, organization_id: str, name: str = "shared-eu") -> None:
    org = uuid.UUID(organization_id)
    async with stack.db.session(org) as session:
        gateway = await platform_gateways.named(session, name)
        await platform_gateways.place(session, org, gateway, OPERATOR)


async def publish(client: httpx.AsyncClient, owner: Account) -> int:
    created = await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    assert created.status_code == 201, created.text
    published = await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    assert published.status_code == 201, published.text
    revision: int = published.json()["revision"]
    return revision


def record(decision_id: str, organization: str | None) -> dict[str, Any]:
    principal: dict[str, Any] = {"id": "apikey:ci-bot", "type": "apikey"}
    if organization is not None:
        principal["organization"] = organization
    return {
        "decision_id": decision_id,
        "time": datetime.now(UTC).isoformat(),
        "input": {"principal": principal, "action": "invoke", "resource": {"id": "agent:bot"}},
        "result": {"decision_id": decision_id, "outcome": "allow", "reasons": []},
    }


async def ingest(
    client: httpx.AsyncClient, credential: str, organization: str, *records: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        f"/api/v1/platform/organizations/{organization}/decisions/ingest",
        json={"decisions": list(records)},
        headers=bearer(credential),
    )


async def test_free_organisations_are_placed_on_the_shared_gateway_and_get_no_dedicated_one(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    before = await free_signup(client, stack, "Early")  # no platform gateway yet: dedicated
    credential = await shared_gateway(stack)
    a = await free_signup(client, stack, "Alpha")
    b = await free_signup(client, stack, "Beta")
    paying = await signup(client, "Paying")  # Enterprise in these tests: never placed

    manifest = await client.get("/api/v1/platform/manifest", headers=bearer(credential))
    assert manifest.status_code == 200, manifest.text
    served = {entry["organization"] for entry in manifest.json()["organizations"]}
    assert served == {a.organization_id, b.organization_id}

    refused = await add_gateway(client, a)
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "shared platform gateway 'shared-eu'" in error["message"]
    assert (await add_gateway(client, before)).status_code == 201
    assert (await add_gateway(client, paying)).status_code == 201


async def test_the_manifest_names_each_served_organisations_revision_and_no_other(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    credential = await shared_gateway(stack)
    other = await shared_gateway(stack, "shared-us")
    a, b, c = [await signup(client, name) for name in ("A", "B", "C")]
    for who in (a, b):
        await place(stack, who.organization_id)
    await place(stack, c.organization_id, "shared-us")
    revision = await publish(client, a)

    manifest = (await client.get("/api/v1/platform/manifest", headers=bearer(credential))).json()
    assert manifest["gateway"] == "shared-eu"
    entries = {e["organization"]: e for e in manifest["organizations"]}
    assert sorted(entries) == sorted([a.organization_id, b.organization_id])
    assert (entries[a.organization_id]["revision"], entries[b.organization_id]["revision"]) == (
        revision,
        None,
    )
    # Each names the organisation's own handle on the shared gateway: what it deploys to.
    for who in (a, b):
        listed = (await client.get("/api/v1/gateways", headers=who.headers)).json()["items"]
        assert [(g["id"], g["mode"]) for g in listed] == [
            (entries[who.organization_id]["gateway_id"], "platform")
        ]
    theirs = (await client.get("/api/v1/platform/manifest", headers=bearer(other))).json()
    assert [e["organization"] for e in theirs["organizations"]] == [c.organization_id]

    # Neither a tenant's gateway credential nor a made-up platform credential reads it.
    tenant_gateway = (await add_gateway(client, a)).json()["credential"]
    for token in (tenant_gateway, "kgp_" + "x" * 43):
        answer = await client.get("/api/v1/platform/manifest", headers=bearer(token))
        assert answer.status_code == 401, answer.text


async def test_a_platform_credential_reads_only_the_bundles_of_organisations_it_serves(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    credential = await shared_gateway(stack)
    a, c = await signup(client, "A"), await signup(client, "C")
    await place(stack, a.organization_id)
    await publish(client, a)
    await publish(client, c)

    mine = await client.get(
        f"/api/v1/bundles/{a.organization_id}/bundle.tar.gz", headers=bearer(credential)
    )
    assert mine.status_code == 200, mine.text
    assert mine.headers["content-type"] == "application/gzip"
    for scope in (c.organization_id, "not-a-uuid", str(uuid.uuid4())):
        theirs = await client.get(
            f"/api/v1/bundles/{scope}/bundle.tar.gz", headers=bearer(credential)
        )
        assert theirs.status_code == 404, theirs.text


async def test_ingest_files_each_decision_under_its_own_served_organisation_only(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    credential = await shared_gateway(stack)
    a, b, c = [await signup(client, name) for name in ("A", "B", "C")]
    for who in (a, b):
        await place(stack, who.organization_id)

    ok = await ingest(client, credential, a.organization_id, record("a-1", a.organization_id))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"accepted": 1, "duplicates": 0}
    # An unauthenticated caller's record names no organisation: filed under the one asked.
    assert (await ingest(client, credential, b.organization_id, record("b-1", None))).is_success

    # Forged by the gateway for an organisation it does not serve: refused, nothing stored.
    forged = await ingest(client, credential, c.organization_id, record("c-1", c.organization_id))
    assert forged.status_code == 403, forged.text
    assert "does not serve" in forged.json()["error"]["message"]
    # One organisation's decision sent under another's: refused, nothing stored.
    crossed = await ingest(client, credential, a.organization_id, record("x-1", b.organization_id))
    assert crossed.status_code == 403, crossed.text
    assert crossed.json()["error"]["details"][0]["field"] == (
        "decisions.0.input.principal.organization"
    )

    async def seen(who: Account) -> list[str]:
        listed = await client.get("/api/v1/decisions", headers=who.headers)
        assert listed.status_code == 200, listed.text
        return [item["decision_id"] for item in listed.json()["items"]]

    assert await seen(a) == ["a-1"]
    assert await seen(b) == ["b-1"]
    assert await seen(c) == []


async def test_executions_are_filed_only_under_a_served_organisation(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    credential = await shared_gateway(stack)
    a, c = await signup(client, "A"), await signup(client, "C")
    await place(stack, a.organization_id)

    def execution(execution_id: str) -> dict[str, Any]:
        return {
            "id": execution_id,
            "time": datetime.now(UTC).isoformat(),
            "principal": "apikey:ci-bot",
            "kind": "agent",
            "name": "bot",
            "status": "succeeded",
        }

    async def post(organization: str, execution_id: str) -> httpx.Response:
        return await client.post(
            f"/api/v1/platform/organizations/{organization}/executions/ingest",
            json={"executions": [execution(execution_id)]},
            headers=bearer(credential),
        )

    assert (await post(a.organization_id, "e-a")).json() == {"accepted": 1, "duplicates": 0}
    refused = await post(c.organization_id, "e-c")
    assert refused.status_code == 403, refused.text

    async def seen(who: Account) -> list[str]:
        listed = await client.get("/api/v1/executions", headers=who.headers)
        assert listed.status_code == 200, listed.text
        return [item["id"] for item in listed.json()["items"]]

    assert await seen(a) == ["e-a"]
    assert await seen(c) == []


async def test_the_handle_on_the_shared_gateway_is_the_operators_not_the_organisations(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await shared_gateway(stack)
    a = await free_signup(client, stack, "Alpha")
    [handle] = (await client.get("/api/v1/gateways", headers=a.headers)).json()["items"]
    assert (handle["name"], handle["mode"]) == ("shared-eu", "platform")
    # No credential of the organisation's to rotate (it would be a dedicated gateway), and
    # nothing of its own to delete.
    rotated = await client.post(f"/api/v1/gateways/{handle['id']}/credential", headers=a.headers)
    assert rotated.status_code == 403, rotated.text
    deleted = await client.delete(f"/api/v1/gateways/{handle['id']}", headers=a.headers)
    assert deleted.status_code == 403, deleted.text
    # The handle is not one of the plan's gateways (the usage shows none of its own).
    plan = (await client.get("/api/v1/plan", headers=a.headers)).json()
    gateways = next(limit for limit in plan["limits"] if limit["name"] == "gateways")
    assert gateways["used"] == 0, plan


async def test_a_shared_sidecars_report_is_filed_under_the_organisations_handle_only(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    credential = await shared_gateway(stack)
    a = await free_signup(client, stack, "Alpha")
    c = await signup(client, "C")  # Enterprise here: never placed
    report = {
        "instance": "shared-pod-1/7",
        "bundle_revision": 3,
        "budgets": [
            {
                "name": "free-plan-executions",
                "scope": "org",
                "metric": "executions",
                "period": "month",
                "window": "month:2026-12",
                "used": 12,
                "limit": 10000,
            }
        ],
    }
    path = "/api/v1/platform/organizations/{}/status"
    taken = await client.post(
        path.format(a.organization_id), json=report, headers=bearer(credential)
    )
    assert taken.status_code == 204, taken.text
    [handle] = (await client.get("/api/v1/gateways", headers=a.headers)).json()["items"]
    shown = (await client.get(f"/api/v1/gateways/{handle['id']}", headers=a.headers)).json()
    assert [i["instance"] for i in shown["instances"]] == ["shared-pod-1/7"], shown

    refused = await client.post(
        path.format(c.organization_id), json=report, headers=bearer(credential)
    )
    assert refused.status_code == 403, refused.text
    assert (await client.get("/api/v1/gateways", headers=c.headers)).json()["items"] == []


async def test_a_call_held_at_the_shared_gateway_gets_a_grant_bound_to_it(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    credential = await shared_gateway(stack)
    owner = await signup(client, "A")
    await place(stack, owner.organization_id)
    requester = await member(client, owner, "developer")
    await publish(client, owner)
    held = held_decision("held-shared", f"user:{requester.email}")
    assert (await ingest(client, credential, owner.organization_id, held)).is_success
    listed = (await client.get("/api/v1/approvals", headers=owner.headers)).json()["items"]
    assert [a["id"] for a in listed] == ["held-shared"]

    approved = await client.post("/api/v1/approvals/held-shared/approve", headers=owner.headers)
    assert approved.status_code == 200, approved.text
    grant = (await client.get("/api/v1/approvals/held-shared", headers=requester.headers)).json()
    claims = jwt.decode(grant["grant"], options={"verify_signature": False})
    # The shared sidecar verifies grants against its own credential's binding.
    assert claims["gw"] == binding_of_credential(credential)
    assert claims["org"] == owner.organization_id
