"""Approval requests from held decisions: approvers, the requester's grant (verified by the
sidecar's own verifier against the bundle's JWKS), conflicts, expiry, tenancy."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from authz_sidecar.authn import signing_keys  # noqa: TID251
from authz_sidecar.grants import (  # noqa: TID251
    GrantError,
    GrantVerifier,
    InMemoryReplayGuard,
)
from control_plane.db.base import utcnow
from control_plane.db.models import ApprovalRequest
from control_plane.db.session import SYSTEM
from policy.bundles.gateway_binding import binding_of_credential
from tests.conftest import Account, Stack, member, signup

POLICY = "kind: RolePolicy\nmetadata: {name: extra-roles}\nspec:\n  roles: [{name: reader}]\n"
OPERATOR_POLICY = """\
kind: RegoPolicy
metadata: {name: ops}
spec:
  approvers: [operator]
  rego: |
    package kaizen.abac.ops
    import rego.v1
    require_approval contains "prod deploys need an operator" if input.action == "deploy"
"""


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def gateway_credential(client: httpx.AsyncClient, who: Account) -> str:
    created = await client.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://gw.test:8080"},
        headers=who.headers,
    )
    assert created.status_code == 201, created.text
    credential: str = created.json()["credential"]
    # Held decisions open requests only when they name a revision the organisation published.
    await client.post("/api/v1/policies", json={"source": POLICY}, headers=who.headers)
    published = await client.post("/api/v1/policies/publish", json={}, headers=who.headers)
    assert published.status_code in (201, 409), published.text
    return credential


def held_decision(
    decision_id: str,
    principal: str,
    *,
    reasons: list[str] | None = None,
    arguments: dict[str, Any] | None = None,
    outcome: str = "require_approval",
    budget: dict[str, Any] | None = None,
    time: str = "2026-11-26T10:00:00Z",
    matched_rules: list[str] | None = None,
    revision: str = "1",
) -> dict[str, Any]:
    decision_input: dict[str, Any] = {
        "principal": {"id": principal, "type": "user"},
        "action": "deploy",
        "resource": {"type": "agent", "id": "agent:support-bot", "workspace": "prod"},
        "channel": "mcp",
    }
    if arguments is not None:
        decision_input["tool"] = {"name": "deploy", "arguments": arguments}
    result: dict[str, Any] = {
        "decision_id": decision_id,
        "outcome": outcome,
        "reasons": reasons or ["deploys to prod need approval"],
        "bundle_revision": revision,
        "matched_rules": matched_rules or [],
    }
    if outcome == "require_approval":
        result["approval_request_id"] = decision_id
    if budget is not None:
        result["budget"] = budget
    return {"decision_id": decision_id, "time": time, "input": decision_input, "result": result}


async def ingest(client: httpx.AsyncClient, credential: str, *decisions: dict[str, Any]) -> None:
    response = await client.post(
        "/api/v1/decisions/ingest", json={"decisions": list(decisions)}, headers=_bearer(credential)
    )
    assert response.status_code == 200, response.text


async def _bundle_jwks(client: httpx.AsyncClient, owner: Account) -> dict[str, Any]:
    await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    published = await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    assert published.status_code == 201, published.text
    bundle = await client.get(
        f"/api/v1/bundles/{owner.organization_id}/bundle.tar.gz", headers=owner.headers
    )
    assert bundle.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(bundle.content), mode="r:gz") as archive:
        member_file = next(m for m in archive.getmembers() if m.name.endswith("data.json"))
        extracted = archive.extractfile(member_file)
        assert extracted is not None
        data = json.loads(extracted.read())
    jwks: dict[str, Any] = data["kaizen"]["jwks"]
    return jwks


async def test_approval_loop_mints_a_grant_the_sidecar_accepts_once(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    requester = await member(client, owner, "developer")
    approver = await member(client, owner, "security_admin")
    viewer = await member(client, owner, "viewer")
    jwks = await _bundle_jwks(client, owner)
    credential = await gateway_credential(client, owner)
    arguments = {"region": "eu", "replicas": 3}
    held = held_decision("held-1", f"user:{requester.email}", arguments=arguments)
    await ingest(client, credential, held)
    await ingest(client, credential, held)  # a resent batch opens no second request

    listed = (await client.get("/api/v1/approvals", headers=approver.headers)).json()["items"]
    assert [(a["id"], a["status"]) for a in listed] == [("held-1", "pending")]
    request = listed[0]
    assert request["principal"] == f"user:{requester.email}"
    assert request["approver_roles"] == []
    assert request["reasons"] == ["deploys to prod need approval"]

    # The requester sees their request (no grant yet); a viewer may not read approvals.
    mine = await client.get("/api/v1/approvals/held-1", headers=requester.headers)
    assert mine.status_code == 200
    assert mine.json()["grant"] is None
    assert (await client.get("/api/v1/approvals/held-1", headers=viewer.headers)).status_code == 403
    assert (await client.get("/api/v1/approvals", headers=viewer.headers)).status_code == 403

    own = await client.post(
        "/api/v1/approvals/held-1/approve", json={"comment": "me"}, headers=requester.headers
    )
    assert own.status_code == 403
    assert "own request" in own.json()["error"]["message"]
    bystander = await client.post("/api/v1/approvals/held-1/approve", headers=viewer.headers)
    assert bystander.status_code == 403

    approved = await client.post(
        "/api/v1/approvals/held-1/approve", json={"comment": "ship it"}, headers=approver.headers
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["decided_by"] == f"user:{approver.email}"
    assert "grant" not in approved.json()

    again = await client.post("/api/v1/approvals/held-1/approve", headers=approver.headers)
    assert again.status_code == 409
    assert (
        await client.post("/api/v1/approvals/held-1/deny", headers=owner.headers)
    ).status_code == 409

    # Only the requester gets the grant.
    for other in (approver, owner):
        seen = (await client.get("/api/v1/approvals/held-1", headers=other.headers)).json()
        assert seen["status"] == "approved"
        assert seen["grant"] is None
    fetched = (await client.get("/api/v1/approvals/held-1", headers=requester.headers)).json()
    grant = fetched["grant"]
    assert grant
    assert fetched["grant_expires_at"]

    verifier = GrantVerifier(
        signing_keys(jwks),
        issuer=stack.settings.issuer,
        organization=owner.organization_id,
        gateway=binding_of_credential(credential),
    )
    claims = verifier.verify(grant, held["input"])
    assert claims["approval_request_id"] == "held-1"
    assert claims["aud"] == "kaizen-sidecar"
    guard = InMemoryReplayGuard()
    assert await guard.first_use(claims["jti"], float(claims["exp"])) is True
    assert await guard.first_use(claims["jti"], float(claims["exp"])) is False
    # Bound to the arguments and the principal it was granted for.
    changed = {**held["input"], "tool": {"name": "deploy", "arguments": {"region": "us"}}}
    for wrong in (changed, {**held["input"], "principal": {"id": "user:eve@example.com"}}):
        try:
            verifier.verify(grant, wrong)
        except GrantError:
            continue
        raise AssertionError("a grant verified for a different request")

    actions = [
        e["action"]
        for e in (await client.get("/api/v1/audit-events?limit=500", headers=owner.headers)).json()[
            "items"
        ]
    ]
    for step in ("approval.request", "approval.approve", "approval.grant_fetch"):
        assert step in actions, step


async def test_named_approver_roles_and_deny(client: httpx.AsyncClient, owner: Account) -> None:
    requester = await member(client, owner, "developer")
    operator = await member(client, owner, "operator")
    security = await member(client, owner, "security_admin")
    credential = await gateway_credential(client, owner)
    # The approvers are named in the signed policy (RegoPolicy spec.approvers) ...
    created = await client.post(
        "/api/v1/policies", json={"source": OPERATOR_POLICY}, headers=owner.headers
    )
    assert created.status_code == 201, created.text
    published = await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    assert published.status_code == 201, published.text
    revision = str(published.json()["revision"])
    # ... and the held decision names the package that held it and that revision.
    held = {
        "reasons": ["prod deploys need an operator"],
        "matched_rules": ["abac:kaizen.abac.ops.require_approval"],
        "revision": revision,
    }
    await ingest(
        client,
        credential,
        held_decision("named-1", f"user:{requester.email}", **held),
        held_decision("named-2", f"user:{requester.email}", **held),
    )
    shown = (await client.get("/api/v1/approvals/named-1", headers=owner.headers)).json()
    assert shown["approver_roles"] == ["operator"]
    # security_admin may decide approvals in general, but this rule named operators.
    refused = await client.post("/api/v1/approvals/named-1/approve", headers=security.headers)
    assert refused.status_code == 403
    ok = await client.post("/api/v1/approvals/named-1/approve", headers=operator.headers)
    assert ok.status_code == 200, ok.text
    # The owner's role includes the operator's.
    denied = await client.post(
        "/api/v1/approvals/named-2/deny", json={"comment": "not today"}, headers=owner.headers
    )
    assert denied.status_code == 200
    assert denied.json()["status"] == "denied"
    assert denied.json()["comment"] == "not today"
    got = (await client.get("/api/v1/approvals/named-2", headers=requester.headers)).json()
    assert got["grant"] is None

    by_status = await client.get("/api/v1/approvals?status=denied", headers=owner.headers)
    assert [a["id"] for a in by_status.json()["items"]] == ["named-2"]
    bad = await client.get("/api/v1/approvals?status=maybe", headers=owner.headers)
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "status"
    long_comment = await client.post(
        "/api/v1/approvals/named-1/deny", json={"comment": "x" * 3000}, headers=owner.headers
    )
    assert long_comment.status_code == 422


async def test_expiry_on_read_and_by_sweep(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    requester = await member(client, owner, "developer")
    credential = await gateway_credential(client, owner)
    await ingest(
        client,
        credential,
        held_decision("old-1", f"user:{requester.email}"),
        held_decision("old-2", f"user:{requester.email}"),
    )
    first = (await client.get("/api/v1/approvals/old-1", headers=owner.headers)).json()
    assert first["status"] == "pending"
    assert first["expires_at"] > first["created_at"]
    async with stack.db.session(SYSTEM) as session:
        await session.execute(
            update(ApprovalRequest).values(expires_at=utcnow() - timedelta(seconds=1))
        )

    # Lazily on read ...
    read = (await client.get("/api/v1/approvals/old-1", headers=owner.headers)).json()
    assert read["status"] == "expired"
    late = await client.post("/api/v1/approvals/old-1/approve", headers=owner.headers)
    assert late.status_code == 409
    # ... and by the worker's sweep.
    await stack.app.state.notifier.run_once(sweep=True)
    row_id = await _id_of(stack, "old-2")
    async with stack.db.session(SYSTEM) as session:
        row = await session.get(ApprovalRequest, row_id)
        assert row is not None
        assert row.status == "expired"
    late = await client.post("/api/v1/approvals/old-2/approve", headers=owner.headers)
    assert late.status_code == 409
    events = (await client.get("/api/v1/audit-events?limit=500", headers=owner.headers)).json()
    assert sum(e["action"] == "approval.expire" for e in events["items"]) == 2


async def _id_of(stack: Stack, request_id: str) -> Any:
    async with stack.db.session(SYSTEM) as session:
        return await session.scalar(
            select(ApprovalRequest.id).where(ApprovalRequest.request_id == request_id)
        )


async def test_other_tenants_requests_are_404(client: httpx.AsyncClient, owner: Account) -> None:
    requester = await member(client, owner, "developer")
    credential = await gateway_credential(client, owner)
    await ingest(client, credential, held_decision("secret-1", f"user:{requester.email}"))
    other = await signup(client, "Other Corp")
    assert (
        await client.get("/api/v1/approvals/secret-1", headers=other.headers)
    ).status_code == 404
    for verb in ("approve", "deny"):
        response = await client.post(f"/api/v1/approvals/secret-1/{verb}", headers=other.headers)
        assert response.status_code == 404
    assert (await client.get("/api/v1/approvals", headers=other.headers)).json()["items"] == []
    still = (await client.get("/api/v1/approvals/secret-1", headers=owner.headers)).json()
    assert still["status"] == "pending"


async def test_decisions_without_a_principal_open_no_request(
    client: httpx.AsyncClient, owner: Account
) -> None:
    credential = await gateway_credential(client, owner)
    masked = held_decision("masked-1", "user:x@example.com")
    masked["input"]["principal"] = {"id": None}
    await ingest(client, credential, masked, held_decision("allow-1", "u", outcome="allow"))
    assert (await client.get("/api/v1/approvals", headers=owner.headers)).json()["items"] == []
