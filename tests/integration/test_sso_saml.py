"""SAML 2.0 single sign-on against a real local pysaml2 IdP (xmlsec1 signatures, a key made
at run time): login, JIT and group mapping, and the forgeries an SP must refuse."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from lxml import etree

from control_plane.services import sso
from tests.conftest import Account, Stack
from tests.idp.dns_server import LocalDns
from tests.idp.saml_idp import SamlIdp
from tests.integration.sso_support import dns, dns_server, verify_domain

__all__ = ["dns", "dns_server"]  # fixtures

DOMAIN = "corp.example.com"
NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}


@pytest.fixture(scope="module")
def running_idp() -> Iterator[SamlIdp]:
    idp = SamlIdp()
    yield idp
    idp.close()


@pytest.fixture
def idp(running_idp: SamlIdp) -> SamlIdp:
    running_idp.sign, running_idp.key, running_idp.lifetime_minutes = True, "good", 5
    running_idp.email, running_idp.groups = f"dev@{DOMAIN}", ["kaizen-devs"]
    return running_idp


async def _provider(
    client: httpx.AsyncClient, owner: Account, idp: SamlIdp, dns: LocalDns
) -> dict[str, Any]:
    await verify_domain(client, owner, dns, DOMAIN)
    response = await client.post(
        "/api/v1/sso/providers",
        json={
            "type": "saml",
            "name": "corp-saml",
            "preset": "okta",
            "email_domains": [DOMAIN],
            "saml_idp_metadata": idp.metadata(),
            "group_mapping": [{"group": "kaizen-devs", "role": "developer", "teams": ["ml"]}],
        },
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    provider: dict[str, Any] = response.json()
    assert provider["saml_idp_entity_id"] == idp.entity_id
    metadata = await client.get(f"/api/v1/auth/saml/{provider['id']}/metadata")
    assert metadata.status_code == 200
    assert 'AuthnRequestsSigned="true"' in metadata.text
    assert 'WantAssertionsSigned="true"' in metadata.text
    assert provider["sp_acs_url"] in metadata.text
    idp.trust_sp(metadata.text)
    return provider


async def _saml_response(client: httpx.AsyncClient, idp: SamlIdp, provider: dict[str, Any]) -> str:
    start = await client.get(f"/api/v1/auth/saml/{provider['id']}/login")
    assert start.status_code == 302, start.text
    location = start.headers["location"]
    assert location.startswith(idp.sso_url + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    assert query["Signature"]
    return idp.respond(location)


async def _post(
    client: httpx.AsyncClient, provider: dict[str, Any], saml_response: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/auth/saml/{provider['id']}/acs", data={"SAMLResponse": saml_response}
    )


def _xml(saml_response: str) -> etree._Element:
    return etree.fromstring(base64.b64decode(saml_response))


def _encode(document: etree._Element) -> str:
    return base64.b64encode(etree.tostring(document)).decode()


async def _users(client: httpx.AsyncClient, owner: Account) -> list[str]:
    items = (await client.get("/api/v1/users", headers=owner.headers)).json()["items"]
    return sorted(u["email"] for u in items)


async def test_login_provisions_the_member_with_the_mapped_role(
    client: httpx.AsyncClient, owner: Account, idp: SamlIdp, dns: LocalDns
) -> None:
    provider = await _provider(client, owner, idp, dns)
    found = await client.get("/api/v1/auth/sso/discover", params={"email": f"x@{DOMAIN}"})
    assert found.json()["login_url"] == provider["login_url"]

    done = await _post(client, provider, await _saml_response(client, idp, provider))
    assert done.status_code == 302, done.text
    code = parse_qs(urlsplit(done.headers["location"].removeprefix("/#")).query)["code"][0]
    tokens = await client.post("/api/v1/auth/sso/exchange", json={"code": code})
    assert tokens.status_code == 200, tokens.text
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    me = (await client.get("/api/v1/me", headers=headers)).json()
    assert (me["label"], me["role"]) == (f"dev@{DOMAIN}", "developer")
    teams = (await client.get("/api/v1/teams", headers=owner.headers)).json()["items"]
    assert [(t["name"], t["member_ids"]) for t in teams] == [("ml", [tokens.json()["user_id"]])]
    events = (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    actions = [e["action"] for e in events]
    assert "sso.user.create" in actions
    assert "sso.login" in actions


@pytest.mark.parametrize(
    ("forgery", "reason"),
    [
        ("unsigned", "is not signed"),
        ("foreign_key", "Signature validation failed"),
        ("tampered", "Signature validation failed"),
        ("wrapped", "must contain 1 assertion"),
        ("expired", "expired"),
    ],
)
async def test_forged_or_stale_assertions_are_refused(
    client: httpx.AsyncClient,
    owner: Account,
    idp: SamlIdp,
    dns: LocalDns,
    forgery: str,
    reason: str,
) -> None:
    provider = await _provider(client, owner, idp, dns)
    if forgery == "unsigned":
        idp.sign = False
    elif forgery == "foreign_key":
        idp.key = "rogue"  # a valid signature, by a key the imported metadata does not name
    elif forgery == "expired":
        idp.lifetime_minutes = -10
    saml_response = await _saml_response(client, idp, provider)
    document = _xml(saml_response)
    assertion = document.find("saml:Assertion", NS)
    assert assertion is not None
    if forgery == "tampered":
        for text in document.iterfind(".//saml:NameID", NS):
            text.text = f"boss@{DOMAIN}"
        for value in document.iterfind(".//saml:AttributeValue", NS):
            value.text = value.text.replace("dev@", "boss@") if value.text else value.text
    elif forgery == "wrapped":
        # XML signature wrapping: the signed assertion hides in Extensions, an unsigned one
        # with another subject takes its place where a naive SP looks.
        evil = copy.deepcopy(assertion)
        evil.set("ID", "id-evil")
        evil.remove(evil.find("ds:Signature", NS))
        for text in evil.iterfind(".//saml:NameID", NS):
            text.text = f"boss@{DOMAIN}"
        extensions = etree.Element(f"{{{NS['samlp']}}}Extensions")
        document.find("saml:Issuer", NS).addnext(extensions)
        document.replace(assertion, evil)
        extensions.append(assertion)
    if forgery in ("tampered", "wrapped"):
        saml_response = _encode(document)
    refused = await _post(client, provider, saml_response)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["message"].startswith("SAML response rejected")
    assert reason in refused.json()["error"]["message"]
    assert await _users(client, owner) == [owner.email]


async def test_a_replayed_response_is_refused(
    client: httpx.AsyncClient, stack: Stack, owner: Account, idp: SamlIdp, dns: LocalDns
) -> None:
    provider = await _provider(client, owner, idp, dns)
    saml_response = await _saml_response(client, idp, provider)
    assert (await _post(client, provider, saml_response)).status_code == 302
    replayed = await _post(client, provider, saml_response)
    assert replayed.status_code == 401
    assert "already used" in replayed.json()["error"]["message"]

    # Even with its AuthnRequest id somehow pending again, the assertion id was remembered.
    request_id = _xml(saml_response).get("InResponseTo")
    await sso.remember(
        stack.kv, "saml-request", request_id, {"provider": provider["id"]}, sso.STATE_TTL
    )
    again = await _post(client, provider, saml_response)
    assert again.status_code == 401
    assert again.json()["error"]["message"] == (
        "SAML response rejected: this assertion was already used"
    )


async def test_bad_metadata_and_bad_posts_are_4xx(
    client: httpx.AsyncClient, owner: Account, idp: SamlIdp, dns: LocalDns
) -> None:
    broken = await client.post(
        "/api/v1/sso/providers",
        json={"type": "saml", "name": "bad", "saml_idp_metadata": "<not-xml"},
        headers=owner.headers,
    )
    assert broken.status_code == 422
    assert broken.json()["error"]["details"][0]["field"] == "saml_idp_metadata"
    with_secret = await client.post(
        "/api/v1/sso/providers",
        json={
            "type": "saml",
            "name": "bad",
            "saml_idp_metadata": idp.metadata(),
            "client_secret": "s",
        },
        headers=owner.headers,
    )
    assert with_secret.status_code == 422
    assert with_secret.json()["error"]["details"][0]["field"] == "client_secret"
    provider = await _provider(client, owner, idp, dns)
    for data in ({}, {"SAMLResponse": "%%%not base64"}, {"SAMLResponse": "PGZvbz48L2Zvbz4="}):
        response = await client.post(f"/api/v1/auth/saml/{provider['id']}/acs", data=data)
        assert response.status_code in (401, 422), response.text
