"""Who can open an approval request, and who it names as approvers (control plane, real
PostgreSQL + Redis and the embedded stack).

An approval request is opened only from a held decision that a gateway credential of the
organisation shipped from its sidecar, naming a bundle revision the organisation published;
the approver roles come from that signed revision, never from the record's text.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx

from tests.conftest import Account, member, signup
from tests.integration.test_approvals import gateway_credential, held_decision, ingest

# A rule whose reason quotes the caller's own input, as real policies do.
NOTE_POLICY = """\
kind: RegoPolicy
metadata: {name: deploy-notes}
spec:
  rego: |
    package kaizen.abac.deploy_notes
    import rego.v1
    require_approval contains sprintf("deploy held, note: %s", [input.tool.arguments.note]) if {
      input.action == "deploy"
    }
"""


async def _publish(client: httpx.AsyncClient, owner: Account, source: str) -> str:
    created = await client.post("/api/v1/policies", json={"source": source}, headers=owner.headers)
    assert created.status_code == 201, created.text
    published = await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    assert published.status_code == 201, published.text
    return str(published.json()["revision"])


async def _simulated(
    client: httpx.AsyncClient, owner: Account, decision_input: dict[str, Any]
) -> dict[str, Any]:
    """The decision output the published policy gives `decision_input` (as a sidecar would)."""
    simulated = await client.post(
        "/api/v1/policies/simulate", json={"input": decision_input}, headers=owner.headers
    )
    assert simulated.status_code == 200, simulated.text
    result: dict[str, Any] = simulated.json()
    return result


async def test_reason_text_naming_viewer_as_approver_is_ignored(
    client: httpx.AsyncClient, owner: Account
) -> None:
    requester = await member(client, owner, "developer")
    viewer = await member(client, owner, "viewer")
    credential = await gateway_credential(client, owner)
    revision = await _publish(client, owner, NOTE_POLICY)
    held = held_decision(
        "inject-1",
        f"user:{requester.email}",
        arguments={"note": "urgent (approvers: viewer)"},
        revision=revision,
        matched_rules=["abac:kaizen.abac.deploy_notes.require_approval"],
        reasons=["deploy held, note: urgent (approvers: viewer)"],
    )
    await ingest(client, credential, held)
    shown = (await client.get("/api/v1/approvals/inject-1", headers=owner.headers)).json()
    assert shown["status"] == "pending"
    assert shown["approver_roles"] == []  # the signed policy named none
    attempt = await client.post("/api/v1/approvals/inject-1/approve", headers=viewer.headers)
    assert attempt.status_code == 403, attempt.text
    assert "only approvers" in attempt.json()["error"]["message"]
    still = (await client.get("/api/v1/approvals/inject-1", headers=owner.headers)).json()
    assert still["status"] == "pending"


async def test_held_decision_uploaded_in_opa_format_opens_no_request(
    client: httpx.AsyncClient, owner: Account
) -> None:
    requester = await member(client, owner, "developer")
    credential = await gateway_credential(client, owner)
    event = {
        "decision_id": "opa-held-1",
        "timestamp": "2026-11-26T10:00:00Z",
        "input": held_decision("x", f"user:{requester.email}")["input"],
        "result": {"outcome": "require_approval", "reasons": ["held"]},
        "bundles": {"kaizen": {"revision": "1"}},
    }
    uploaded = await client.post(
        "/api/v1/decisions/opa",
        content=gzip.compress(json.dumps([event]).encode()),
        headers={
            "Authorization": f"Bearer {credential}",
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
    )
    assert uploaded.status_code in (200, 204), uploaded.text
    stored = await client.get("/api/v1/decisions/opa-held-1", headers=owner.headers)
    assert stored.status_code == 200  # the decision is logged ...
    opened = await client.get("/api/v1/approvals/opa-held-1", headers=owner.headers)
    assert opened.status_code == 404  # ... but opens no approval request


async def test_held_decision_from_another_organisations_gateway_opens_no_request(
    client: httpx.AsyncClient, owner: Account
) -> None:
    requester = await member(client, owner, "developer")
    await gateway_credential(client, owner)
    ours = await _publish(client, owner, NOTE_POLICY)  # revision 2 of our organisation
    other = await signup(client, "Mallory Corp")
    foreign = await gateway_credential(client, other)  # their revision 1 only
    held = held_decision(
        "cross-1",
        f"user:{requester.email}",
        arguments={"note": "n"},
        revision=ours,
        matched_rules=["abac:kaizen.abac.deploy_notes.require_approval"],
    )
    await ingest(client, foreign, held)
    for account in (owner, other):
        opened = await client.get("/api/v1/approvals/cross-1", headers=account.headers)
        assert opened.status_code == 404, (account.email, opened.text)


async def test_held_decision_naming_an_unpublished_revision_or_package_opens_no_request(
    client: httpx.AsyncClient, owner: Account
) -> None:
    requester = await member(client, owner, "developer")
    credential = await gateway_credential(client, owner)
    await ingest(
        client,
        credential,
        held_decision("unknown-rev", f"user:{requester.email}", revision="99"),
        held_decision(
            "unknown-pkg",
            f"user:{requester.email}",
            matched_rules=["abac:kaizen.abac.lenient.require_approval"],
        ),
    )
    for request_id in ("unknown-rev", "unknown-pkg"):
        opened = await client.get(f"/api/v1/approvals/{request_id}", headers=owner.headers)
        assert opened.status_code == 404, (request_id, opened.text)


async def test_simulated_decision_carries_the_package_whose_approvers_apply(
    client: httpx.AsyncClient, owner: Account
) -> None:
    # The approver roles of a real decision come from the revision: named ones are honoured.
    requester = await member(client, owner, "developer")
    operator = await member(client, owner, "operator")
    security = await member(client, owner, "security_admin")
    credential = await gateway_credential(client, owner)
    named = NOTE_POLICY.replace("spec:\n  rego:", "spec:\n  approvers: [operator]\n  rego:")
    named += (
        "---\nkind: RolePolicy\nmetadata: {name: deployers}\nspec:\n"
        '  roles: [{name: deployer, permissions: [{resource: "agent:*", actions: [deploy]}]}]\n'
        f'  bindings: [{{subject: "user:{requester.email}", role: deployer}}]\n'
    )
    revision = await _publish(client, owner, named)
    decision_input = held_decision("x", f"user:{requester.email}", arguments={"note": "n"})["input"]
    result = await _simulated(client, owner, decision_input)
    assert result["outcome"] == "require_approval"
    record = {
        "decision_id": "named-real-1",
        "time": "2026-11-26T10:00:00Z",
        "input": decision_input,
        "result": {**result, "bundle_revision": revision, "decision_id": "named-real-1"},
    }
    await ingest(client, credential, record)
    shown = (await client.get("/api/v1/approvals/named-real-1", headers=owner.headers)).json()
    assert shown["approver_roles"] == ["operator"]
    refused = await client.post("/api/v1/approvals/named-real-1/approve", headers=security.headers)
    assert refused.status_code == 403
    ok = await client.post("/api/v1/approvals/named-real-1/approve", headers=operator.headers)
    assert ok.status_code == 200, ok.text
