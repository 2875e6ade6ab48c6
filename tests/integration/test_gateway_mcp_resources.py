"""Each gateway's MCP URL reaches its sidecar in the signed bundle (M11): registering a
gateway, rotating its credential or deleting it re-signs the organisation's bundle, whose
`mcp_resources` names each gateway's canonical MCP URL under its credential's binding, so a
sidecar knows the one OAuth audience that is its own without being told by configuration,
and never another organisation's gateways."""

from __future__ import annotations

from typing import Any

import httpx

from policy.bundles.gateway_binding import binding_of_credential
from tests.conftest import Account, Stack, signup
from tests.integration.bundle_support import newest_bundle

POLICY = """\
kind: RolePolicy
metadata: {name: gateway-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
"""


async def _bundle(stack: Stack, organization_id: str) -> tuple[int, dict[str, Any]]:
    """The newest revision's `kaizen` data, verified as the organisation's sidecar does."""
    revision, verified = await newest_bundle(stack, organization_id)
    return revision, dict(verified.compiled.kaizen)


async def _publish(client: httpx.AsyncClient, owner: Account) -> None:
    written = await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    assert written.status_code in (200, 201), written.text
    published = await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    assert published.status_code in (200, 201), published.text


async def test_gateway_changes_resign_the_bundle_with_each_gateways_mcp_url(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    org = owner.organization_id
    await _publish(client, owner)
    published, kaizen = await _bundle(stack, org)
    assert "mcp_resources" not in kaizen

    created = await client.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "https://gw.example.com/"},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    gateway, credential = created.json()["id"], created.json()["credential"]
    registered, kaizen = await _bundle(stack, org)
    assert registered > published
    assert kaizen["mcp_resources"] == {
        binding_of_credential(credential): "https://gw.example.com/mcp"
    }
    assert credential not in str(kaizen), "the bundle names the binding, not the credential"

    rotated = await client.post(f"/api/v1/gateways/{gateway}/credential", headers=owner.headers)
    assert rotated.status_code == 201, rotated.text
    fresh = rotated.json()["credential"]
    _revision, kaizen = await _bundle(stack, org)
    assert kaizen["mcp_resources"] == {binding_of_credential(fresh): "https://gw.example.com/mcp"}

    deleted = await client.delete(f"/api/v1/gateways/{gateway}", headers=owner.headers)
    assert deleted.status_code == 204
    _revision, kaizen = await _bundle(stack, org)
    assert "mcp_resources" not in kaizen


async def test_a_bundle_never_names_another_organisations_gateways(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    await _publish(client, owner)
    other = await signup(client, "Other Org")
    await _publish(client, other)
    for account, name in ((other, "theirs"), (owner, "ours")):  # ours re-signs after theirs
        created = await client.post(
            "/api/v1/gateways",
            json={"name": name, "environment": "prod", "url": f"https://{name}.example.com"},
            headers=account.headers,
        )
        assert created.status_code == 201, created.text
    _revision, ours = await _bundle(stack, owner.organization_id)
    assert list(ours["mcp_resources"].values()) == ["https://ours.example.com/mcp"]
    _revision, theirs = await _bundle(stack, other.organization_id)
    assert list(theirs["mcp_resources"].values()) == ["https://theirs.example.com/mcp"]
