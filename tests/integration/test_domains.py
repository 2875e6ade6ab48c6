"""Organisation email domains through the API, against a real local DNS server: the admin
API, what a DNS failure answers, and what removing a domain takes away."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.conftest import Account, Stack, member
from tests.idp.dns_server import LocalDns
from tests.integration.sso_support import claim_domain, dns, dns_server, verify_domain

__all__ = ["dns", "dns_server"]  # fixtures

DOMAIN = "verified.example.org"


async def test_claim_list_verify_and_remove_are_audited(
    client: httpx.AsyncClient, owner: Account, dns: LocalDns
) -> None:
    claimed = await claim_domain(client, owner, DOMAIN)
    assert claimed["domain"] == DOMAIN
    assert claimed["verified"] is False
    assert claimed["txt_name"] == DOMAIN
    twice = await client.post("/api/v1/domains", json={"domain": DOMAIN}, headers=owner.headers)
    assert twice.status_code == 409
    bad = await client.post(
        "/api/v1/domains", json={"domain": "not a domain"}, headers=owner.headers
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"].endswith("domain")

    dns.set_txt(DOMAIN, "v=spf1 -all", claimed["txt_value"])
    verified = await client.post(f"/api/v1/domains/{claimed['id']}/verify", headers=owner.headers)
    assert verified.status_code == 200, verified.text
    assert verified.json()["verified"] is True
    again = await client.post(f"/api/v1/domains/{claimed['id']}/verify", headers=owner.headers)
    assert again.json()["verified_at"] == verified.json()["verified_at"]  # idempotent
    fetched = await client.get(f"/api/v1/domains/{claimed['id']}", headers=owner.headers)
    assert fetched.json()["verified"] is True

    removed = await client.delete(f"/api/v1/domains/{claimed['id']}", headers=owner.headers)
    assert removed.status_code == 204
    assert (await client.get("/api/v1/domains", headers=owner.headers)).json()["items"] == []
    events = await client.get("/api/v1/audit-events", headers=owner.headers)
    actions = [e["action"] for e in events.json()["items"]]
    assert {"domain.claim", "domain.verify", "domain.delete"} <= set(actions)


async def test_only_sso_administrators_manage_domains(
    client: httpx.AsyncClient, owner: Account
) -> None:
    developer = await member(client, owner, "developer")
    refused = await client.post(
        "/api/v1/domains", json={"domain": DOMAIN}, headers=developer.headers
    )
    assert refused.status_code == 403
    listed = await client.get("/api/v1/domains", headers=developer.headers)
    assert listed.status_code == 403


async def test_a_dns_server_that_does_not_answer_is_a_503(
    client: httpx.AsyncClient,
    owner: Account,
    dns: LocalDns,
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: queries go unanswered
        monkeypatch.setattr(
            stack.settings, "dns_nameserver", f"127.0.0.1:{silent.getsockname()[1]}"
        )
        monkeypatch.setattr(stack.settings, "dns_timeout_seconds", 0.5)
        claimed = await claim_domain(client, owner, DOMAIN)
        answer = await client.post(f"/api/v1/domains/{claimed['id']}/verify", headers=owner.headers)
    assert answer.status_code == 503, answer.text
    assert DOMAIN in answer.json()["error"]["message"]
    listed = await client.get("/api/v1/domains", headers=owner.headers)
    assert [d["verified"] for d in listed.json()["items"]] == [False]


async def test_removing_a_domain_stops_its_routing_and_sign_in(
    client: httpx.AsyncClient, owner: Account, dns: LocalDns
) -> None:
    domain = await verify_domain(client, owner, dns, DOMAIN)
    created = await client.post(
        "/api/v1/sso/providers",
        json={
            "type": "oidc",
            "name": "routed",
            "issuer": "https://idp.example.org",
            "client_id": "c",
            "email_domains": [DOMAIN],
        },
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    found = await client.get("/api/v1/auth/sso/discover", params={"email": f"a@{DOMAIN}"})
    assert found.status_code == 200

    await client.delete(f"/api/v1/domains/{domain['id']}", headers=owner.headers)

    gone = await client.get("/api/v1/auth/sso/discover", params={"email": f"a@{DOMAIN}"})
    assert gone.status_code == 404
    provider = await client.get(
        f"/api/v1/sso/providers/{created.json()['id']}", headers=owner.headers
    )
    assert provider.json()["email_domains"] == []
