"""Helpers shared by the SSO tests: a real local DNS server answering the control plane's
domain-verification lookups, and a domain verified through the API with it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Account, Stack
from tests.idp.dns_server import LocalDns


@pytest.fixture(scope="session")
def dns_server() -> Iterator[LocalDns]:
    server = LocalDns().start()
    yield server
    server.stop()


@pytest.fixture
def dns(dns_server: LocalDns, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> LocalDns:
    """The local DNS server, as the control plane's resolver (KAIZEN_DNS_NAMESERVER)."""
    dns_server.clear()
    monkeypatch.setattr(stack.settings, "dns_nameserver", dns_server.nameserver)
    monkeypatch.setattr(stack.settings, "dns_timeout_seconds", 2.0)
    return dns_server


async def claim_domain(client: httpx.AsyncClient, account: Account, domain: str) -> dict[str, str]:
    claimed = await client.post("/api/v1/domains", json={"domain": domain}, headers=account.headers)
    assert claimed.status_code == 201, claimed.text
    body: dict[str, str] = claimed.json()
    return body


async def verify_domain(
    client: httpx.AsyncClient, account: Account, dns: LocalDns, domain: str
) -> dict[str, str]:
    """Claim `domain` for the account's organisation, publish its TXT record, verify it."""
    claimed = await claim_domain(client, account, domain)
    dns.set_txt(domain, claimed["txt_value"])
    verified = await client.post(f"/api/v1/domains/{claimed['id']}/verify", headers=account.headers)
    assert verified.status_code == 200, verified.text
    body: dict[str, str] = verified.json()
    assert body["verified"] is True
    return body
