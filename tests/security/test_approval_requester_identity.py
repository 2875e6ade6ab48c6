"""The requester never decides their own approval request, whichever of their credentials
they use: compared by user id, not by subject string (real PostgreSQL + Redis and embedded).
"""

from __future__ import annotations

import httpx

from tests.conftest import Account, member
from tests.integration.test_approvals import gateway_credential, held_decision, ingest


async def _api_key(client: httpx.AsyncClient, who: Account, name: str) -> dict[str, str]:
    created = await client.post(
        "/api/v1/api-keys", json={"name": name, "role": "admin"}, headers=who.headers
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


async def test_requester_approving_through_their_own_api_key_is_refused(
    client: httpx.AsyncClient, owner: Account
) -> None:
    requester = await member(client, owner, "admin")  # may decide approvals and make API keys
    credential = await gateway_credential(client, owner)
    await ingest(client, credential, held_decision("self-key-1", f"user:{requester.email}"))
    own_key = await _api_key(client, requester, "my-automation")
    attempt = await client.post("/api/v1/approvals/self-key-1/approve", headers=own_key)
    assert attempt.status_code == 403, attempt.text
    assert "requester cannot approve" in attempt.json()["error"]["message"]
    shown = (await client.get("/api/v1/approvals/self-key-1", headers=owner.headers)).json()
    assert shown["status"] == "pending"


async def test_requester_calling_by_api_key_approving_with_their_login_is_refused(
    client: httpx.AsyncClient, owner: Account
) -> None:
    requester = await member(client, owner, "admin")
    credential = await gateway_credential(client, owner)
    await _api_key(client, requester, "deploy-bot")
    await ingest(client, credential, held_decision("self-key-2", "apikey:deploy-bot"))
    attempt = await client.post("/api/v1/approvals/self-key-2/approve", headers=requester.headers)
    assert attempt.status_code == 403, attempt.text
    assert "requester cannot approve" in attempt.json()["error"]["message"]
    # Another approver may, and only the requester (by any credential) gets the grant.
    other = await member(client, owner, "security_admin")
    ok = await client.post("/api/v1/approvals/self-key-2/approve", headers=other.headers)
    assert ok.status_code == 200, ok.text
    mine = (await client.get("/api/v1/approvals/self-key-2", headers=requester.headers)).json()
    assert mine["grant"]
    theirs = (await client.get("/api/v1/approvals/self-key-2", headers=other.headers)).json()
    assert theirs["grant"] is None
